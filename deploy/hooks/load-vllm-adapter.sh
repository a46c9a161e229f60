#!/bin/sh
# Promotion hook for vLLM: load adapter LOREBOT_ADAPTER_VERSION into a running vLLM server, no
# restart needed. vLLM must run with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
# (deploy/docker-compose.yml's vllm service does).
#
# POSTs {"lora_name": ..., "lora_path": ...} to /v1/load_lora_adapter (an adapter vLLM already
# has under that name counts as loaded), then checks that GET /v1/models lists it.
#
# Exit status 0: vLLM serves the adapter. Anything else: a message on stderr and a non-zero
# status; the caller then keeps the previous adapter.
#
#   LOREBOT_ADAPTER_VERSION  the adapter's name, as the bot will ask for it (required)
#   LOREBOT_ADAPTER_PATH     its directory as the vLLM server sees it
#                            (default /adapters/$LOREBOT_ADAPTER_VERSION, compose's mount)
#   VLLM_URL                 where vLLM answers (default http://127.0.0.1:8082, compose's port)
#   LOREBOT_HOOK_TIMEOUT_S   seconds each request may take (default 600)
set -eu

log() { printf 'load-vllm-adapter: %s\n' "$*" >&2; }

version="${LOREBOT_ADAPTER_VERSION:-}"
if [ -z "$version" ]; then
    log "LOREBOT_ADAPTER_VERSION is not set: which adapter is being promoted?"
    exit 2
fi
# Both go into JSON by hand below, so nothing that would need escaping.
case "$version" in
    .* | *[!A-Za-z0-9._-]*) log "'$version' is not a usable adapter name (letters, digits, '.', '_', '-')"; exit 2 ;;
esac
path="${LOREBOT_ADAPTER_PATH:-/adapters/$version}"
case "$path" in
    *'"'* | *\\*) log "LOREBOT_ADAPTER_PATH may not hold quotes or backslashes: '$path'"; exit 2 ;;
esac
url="${VLLM_URL:-http://127.0.0.1:8082}"
url="${url%/}"
timeout_s="${LOREBOT_HOOK_TIMEOUT_S:-600}"
case "$timeout_s" in
    '' | *[!0-9]* | 0) log "LOREBOT_HOOK_TIMEOUT_S must be a whole number of seconds, not '$timeout_s'"; exit 2 ;;
esac

body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT

# request METHOD URL [JSON]: the response body goes to $body_file, the status code (000 when
# nothing answered) to stdout. curl if present, else Python's standard library.
request() {
    if command -v curl >/dev/null 2>&1; then
        if [ $# -ge 3 ]; then
            curl -s -o "$body_file" -w '%{http_code}' --max-time "$timeout_s" -X "$1" \
                -H 'Content-Type: application/json' --data "$3" "$2" 2>/dev/null || true
        else
            curl -s -o "$body_file" -w '%{http_code}' --max-time "$timeout_s" -X "$1" "$2" 2>/dev/null || true
        fi
    else
        python3 - "$body_file" "$timeout_s" "$@" <<'EOF'
import sys, urllib.error, urllib.request
body_file, timeout, method, url = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
data = sys.argv[5].encode() if len(sys.argv) > 5 else None
headers = {"Content-Type": "application/json"} if data is not None else {}
req = urllib.request.Request(url, data=data, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=timeout) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
except Exception:
    status, body = 0, b""
with open(body_file, "wb") as out:
    out.write(body)
print(f"{status:03d}")
EOF
    fi
}

# The body of the last answer, on one line and cut short, for messages.
answer() { tr '\n' ' ' <"$body_file" | cut -c 1-300; }

payload=$(printf '{"lora_name": "%s", "lora_path": "%s"}' "$version" "$path")
status=$(request POST "$url/v1/load_lora_adapter" "$payload")
case "$status" in
    200)
        log "vLLM at $url loaded $version from $path"
        ;;
    400)
        if grep -qi 'already' "$body_file"; then
            log "vLLM at $url already has $version loaded"
        else
            log "FAILED: vLLM at $url refused to load $version from $path (400): $(answer);" \
                "keep the previous adapter"
            exit 1
        fi
        ;;
    000)
        log "FAILED: nothing answered at $url/v1/load_lora_adapter; is vLLM running" \
            "(docker compose --profile vllm up -d vllm)? Keep the previous adapter"
        exit 1
        ;;
    404)
        log "FAILED: vLLM at $url answered 404 to loading $version from $path: $(answer)." \
            "Either $path is not an adapter directory the server can see, or the server runs" \
            "without VLLM_ALLOW_RUNTIME_LORA_UPDATING=True. Keep the previous adapter"
        exit 1
        ;;
    *)
        log "FAILED: vLLM at $url answered $status to loading $version: $(answer); keep the previous adapter"
        exit 1
        ;;
esac

status=$(request GET "$url/v1/models")
if [ "$status" != 200 ]; then
    log "FAILED: vLLM at $url answered $status to GET /v1/models: $(answer); keep the previous adapter"
    exit 1
fi
# vLLM writes compact JSON; whitespace is dropped anyway, so "id": "x" matches as well.
if tr -d ' \n\r\t' <"$body_file" | grep -qF "\"id\":\"$version\""; then
    log "vLLM at $url serves $version"
    exit 0
fi
log "FAILED: vLLM at $url does not list $version in /v1/models after loading it: $(answer);" \
    "keep the previous adapter"
exit 1
