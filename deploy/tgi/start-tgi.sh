#!/bin/sh
# Entrypoint of lorebot's TGI container: start text-generation-launcher with the LoRA adapters of
# lorebot's adapters registry. TGI reads its adapters (--lora-adapters) only when it starts, so
# this runs at every start and a restart is how a newly promoted adapter reaches the server (see
# deploy/hooks/reload-tgi.sh).
#
# Registry layout: one directory per adapter version under the mount, named as the adapter is
# served (the bot sends it as the chat request's "model"); promoted.json names the adapter in
# service. Directories starting with "." or without adapter_config.json are being written or
# were abandoned, and are skipped.
#
# Which adapters: at most LOREBOT_TGI_MAX_ADAPTERS (each takes GPU memory), the most recent ones
# by name (version names are zero-padded, so name order is age order), and always the promoted
# one: when it is older than the rest, it takes the seat of the oldest of them.
#
# POSIX sh on purpose: the TGI image guarantees no jq, and the script is tested with dash.
set -eu

log() { printf 'start-tgi: %s\n' "$*" >&2; }

mount="${LOREBOT_ADAPTERS_MOUNT:-/adapters}"
mount="${mount%/}"
max="${LOREBOT_TGI_MAX_ADAPTERS:-8}"
case "$max" in
    '' | *[!0-9]*) log "LOREBOT_TGI_MAX_ADAPTERS must be a whole number of 1 or more, not '$max'"; exit 2 ;;
esac
if [ "$max" -lt 1 ]; then
    log "LOREBOT_TGI_MAX_ADAPTERS must be a whole number of 1 or more, not '$max'"
    exit 2
fi

# The image's own entrypoint (/tgi-entrypoint.sh) refreshes the linker cache before starting the
# launcher; do the same when running in that image (and never on a host running the tests).
if [ -f /tgi-entrypoint.sh ]; then
    ldconfig 2>/dev/null || true
fi

# An operator who passes --lora-adapters explicitly gets exactly that.
for arg in "$@"; do
    case "$arg" in
        --lora-adapters | --lora-adapters=*)
            log "--lora-adapters given on the command line: serving those, not the registry's"
            exec text-generation-launcher "$@"
            ;;
    esac
done

# A name TGI can take in "name=path,name=path": no separators, no spaces, no path characters.
usable_name() {
    case "$1" in
        '' | .* | *[!A-Za-z0-9._-]*) return 1 ;;
    esac
    return 0
}

# A complete adapter: a directory with adapter_config.json, under a usable name.
is_complete() {
    usable_name "$1" && [ -d "$mount/$1" ] && [ -f "$mount/$1/adapter_config.json" ]
}

# The "version" of promoted.json (one line or pretty-printed), or nothing.
promoted=""
if [ -f "$mount/promoted.json" ]; then
    promoted=$(tr '\n\r\t' '   ' <"$mount/promoted.json" |
        grep -o '"version"[[:space:]]*:[[:space:]]*"[^"]*"' | head -n 1 |
        sed 's/.*"\([^"]*\)"$/\1/') || promoted=""
    if [ -z "$promoted" ]; then
        log "$mount/promoted.json names no version; serving the most recent adapters only"
    elif ! is_complete "$promoted"; then
        log "promoted adapter '$promoted' is not a complete adapter under $mount; ignoring it"
        promoted=""
    fi
fi

# Complete adapters, oldest first.
names=""
for dir in "$mount"/*; do
    [ -d "$dir" ] || continue
    name=${dir##*/}
    if ! usable_name "$name"; then
        log "skipping '$name': an adapter name may hold only letters, digits, '.', '_' and '-'"
        continue
    fi
    is_complete "$name" || continue
    names="$names$name
"
done
names=$(printf '%s' "$names" | LC_ALL=C sort)

# The most recent ones, with a seat kept for the promoted one.
if [ -n "$promoted" ] && ! printf '%s\n' "$names" | tail -n "$max" | grep -qxF "$promoted"; then
    others=$(printf '%s\n' "$names" | grep -vxF "$promoted" | tail -n "$((max - 1))" || true)
    chosen=$(printf '%s\n%s\n' "$promoted" "$others" | grep -v '^$' | LC_ALL=C sort)
else
    chosen=$(printf '%s\n' "$names" | tail -n "$max" | grep -v '^$' || true)
fi

if [ -z "$chosen" ]; then
    log "no complete adapter under $mount: serving the base model only"
    exec text-generation-launcher "$@"
fi

spec=""
for name in $chosen; do
    spec="${spec:+$spec,}$name=$mount/$name"
done
count=$(printf '%s\n' "$chosen" | wc -l | tr -d ' ')
listed=$(printf '%s' "$chosen" | tr '\n' ' ' | sed 's/ /, /g')
log "serving $count adapter(s) from $mount: $listed${promoted:+ (promoted: $promoted)}"
exec text-generation-launcher "$@" --lora-adapters "$spec"
