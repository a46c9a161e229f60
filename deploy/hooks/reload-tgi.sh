#!/bin/sh
# Promotion hook for TGI: make the TGI server serve adapter LOREBOT_ADAPTER_VERSION.
#
# TGI loads LoRA adapters only when it starts (deploy/tgi/start-tgi.sh builds --lora-adapters
# from the adapters registry then), so promoting an adapter means restarting TGI and waiting
# until it is healthy again. The restarted server serves the most recent adapters of the
# registry and the promoted one, so the version being promoted, the newest, is among them.
# TGI cannot confirm it: it lists no adapters in /v1/models, and answers a request naming an
# adapter it has not loaded with the base model instead of an error; so this hook checks health.
#
# Exit status 0: TGI restarted and answers /health with 200. Anything else (the restart failed,
# TGI did not come back in time): a message on stderr and a non-zero status; the caller then
# keeps the previous adapter.
#
#   LOREBOT_ADAPTER_VERSION  the adapter being promoted (required; only reported here)
#   TGI_URL                  where TGI answers (default http://127.0.0.1:8081, compose's port)
#   LOREBOT_RESTART_COMMAND  how to restart TGI, run with sh -c (default: docker compose restart
#                            of deploy/docker-compose.yml's tgi service). For Kubernetes, wait for the
#                            rollout too, or the old pod answers /health until it is replaced:
#                            kubectl rollout restart deployment/lorebot-tgi &&
#                            kubectl rollout status deployment/lorebot-tgi --timeout=600s
#   LOREBOT_HOOK_TIMEOUT_S   seconds for the restart and the wait together (default 600: a
#                            first start downloads the base model)
#   LOREBOT_HOOK_POLL_INTERVAL_S  seconds between /health checks (default 5)
set -eu

log() { printf 'reload-tgi: %s\n' "$*" >&2; }

version="${LOREBOT_ADAPTER_VERSION:-}"
if [ -z "$version" ]; then
    log "LOREBOT_ADAPTER_VERSION is not set: which adapter is being promoted?"
    exit 2
fi
url="${TGI_URL:-http://127.0.0.1:8081}"
url="${url%/}"
timeout_s="${LOREBOT_HOOK_TIMEOUT_S:-600}"
interval_s="${LOREBOT_HOOK_POLL_INTERVAL_S:-5}"
case "$timeout_s" in
    '' | *[!0-9]*) log "LOREBOT_HOOK_TIMEOUT_S must be a whole number of seconds, not '$timeout_s'"; exit 2 ;;
esac
case "$interval_s" in
    '' | *[!0-9.]* | *.*.*) log "LOREBOT_HOOK_POLL_INTERVAL_S must be a number of seconds, not '$interval_s'"; exit 2 ;;
esac

# The status code of a GET (000 when nothing answered), with curl, else Python's standard library.
http_status() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -w '%{http_code}' --max-time "$2" "$1" 2>/dev/null || true
    else
        python3 - "$1" "$2" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code)
except Exception:
    print("000")
EOF
    fi
}

started=$(date +%s)

# Restart, bounded by the timeout where coreutils' timeout is at hand.
bounded() {
    if command -v timeout >/dev/null 2>&1; then
        timeout "$timeout_s" "$@"
    else
        "$@"
    fi
}
if [ -n "${LOREBOT_RESTART_COMMAND:-}" ]; then
    restart_text="$LOREBOT_RESTART_COMMAND"
    log "promoting $version: restarting TGI ($restart_text)"
    if bounded sh -c "$LOREBOT_RESTART_COMMAND"; then status=0; else status=$?; fi
else
    compose_file="$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)/docker-compose.yml"
    restart_text="docker compose -f $compose_file restart tgi"
    log "promoting $version: restarting TGI ($restart_text)"
    if bounded docker compose -f "$compose_file" restart tgi; then status=0; else status=$?; fi
fi
if [ "$status" -ne 0 ]; then
    log "FAILED: the restart command exited with status $status ($restart_text);" \
        "$version is not being served; keep the previous adapter"
    exit 1
fi

# Wait until the restarted server has loaded the model and its adapters.
last="000"
while :; do
    now=$(date +%s)
    left=$((timeout_s - (now - started)))
    if [ "$left" -le 0 ]; then
        log "FAILED: TGI at $url did not answer /health with 200 within ${timeout_s}s of the restart" \
            "(last answer: $([ "$last" = 000 ] && echo 'none' || echo "$last"));" \
            "$version is not being served; keep the previous adapter"
        exit 1
    fi
    request_s=$((left < 10 ? left : 10))
    last=$(http_status "$url/health" "$request_s")
    if [ "$last" = 200 ]; then
        log "TGI at $url is healthy again after $(($(date +%s) - started))s, serving the registry's" \
            "adapters as of its start ($version included unless the registry lacks it)"
        exit 0
    fi
    sleep "$interval_s"
done
