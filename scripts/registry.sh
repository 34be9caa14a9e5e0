#!/bin/sh
# A throw-away local registry for tests and benchmarks: Debian's
# docker-registry (the CNCF distribution registry) on 127.0.0.1, a free
# port, storage in a temp directory. Installs the package if it is missing.
#
#   eval "$(scripts/registry.sh start [--auth FILE] [--tls CERT KEY])"
#       # sets REGISTRY=127.0.0.1:PORT, REGISTRY_DIR, REGISTRY_PID
#   scripts/registry.sh stop "$REGISTRY_DIR"    # kills it, removes the directory
#
# --auth FILE: a YAML `auth:` section (htpasswd or token) appended to the
# configuration; --tls CERT KEY: serve HTTPS with this certificate. Nothing
# listens beyond 127.0.0.1; the package's own systemd service is neither
# started nor needed.
set -eu

say() { echo "registry: $*" >&2; }

start() {
    auth=""
    cert=""
    key=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --auth) auth=$2; shift 2 ;;
            --tls) cert=$2; key=$3; shift 3 ;;
            *) say "unknown option $1 (use --auth FILE, --tls CERT KEY)"; exit 2 ;;
        esac
    done
    if ! command -v docker-registry >/dev/null 2>&1; then
        say "installing docker-registry"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-registry; } >/dev/null 2>&1 ||
            { say "cannot install docker-registry"; exit 1; }
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/overlayctl-registry.XXXXXX")
    # A free port: bound by the kernel's choice, released, then given to the
    # registry (a race with another binder is possible but harmless: the
    # wait below fails and says so).
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    if [ -n "$cert" ]; then
        printf '  tls:\n    certificate: %s\n    key: %s\n' "$cert" "$key" >> "$dir/config.yml"
    fi
    if [ -n "$auth" ]; then
        cat "$auth" >> "$dir/config.yml"
    fi
    scheme=http
    [ -z "$cert" ] || scheme=https
    docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
    echo $! > "$dir/pid"
    # Ready when /v2/ answers (200, or 401 with auth).
    i=0
    until python3 -c "
import ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
try:
    urllib.request.urlopen('$scheme://127.0.0.1:$port/v2/', timeout=1, context=ctx)
except urllib.error.HTTPError:
    pass
except OSError:
    sys.exit(1)
" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! running "$(cat "$dir/pid")"; then
            say "docker-registry did not start: $(tail -3 "$dir/log")"
            stop "$dir"
            exit 1
        fi
        sleep 0.1
    done
    echo "export REGISTRY=127.0.0.1:$port REGISTRY_DIR=$dir REGISTRY_PID=$(cat "$dir/pid")"
}

# Whether process $1 still runs: a zombie does not. The registry dies at once
# on SIGTERM, but as an orphan it is reaped only when the init of the host
# (or container) gets to it, which can take seconds; kill -0 succeeds on a
# zombie, and stop waited that out for each registry.
running() {
    state=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

stop() {
    dir=$1
    case "$dir" in
        */overlayctl-registry.*) ;;
        *) say "not a directory made by this script: $dir"; exit 2 ;;
    esac
    if [ -f "$dir/pid" ]; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        i=0
        while running "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) [ $# -eq 2 ] || { say "usage: $0 stop DIR"; exit 2; }; stop "$2" ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
