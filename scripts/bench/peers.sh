#!/bin/sh
# Make the benchmark's peer runtimes usable on this host, without changing
# anything global: missing packages are installed, and everything else (a
# crun wrapper, a containers.conf) is written into one directory that the
# caller removes when done.
#
#   scripts/bench/peers.sh [--no-install] [DIR]
#
# DIR defaults to a fresh mktemp directory. Progress goes to stderr; stdout
# is only the environment to use, as shell assignments:
#
#   eval "$(scripts/bench/peers.sh)"
#   podman run --rm --network=none IMAGE /bin/true    # uses $CONTAINERS_CONF
#   rm -rf "$PEERS_DIR"
#
# Variables printed: PEERS_DIR, CONTAINERS_CONF (when podman is installed),
# and PEER_PODMAN, PEER_NSPAWN, PEER_BWRAP, PEER_UNSHARE: the absolute path
# of each peer, or empty when it is not installed.
#
# What the host needs (found on Debian 12 with podman 4.3 and crun 1.8):
# - podman writes nofile=1048576 and a large nproc into the OCI spec; without
#   CAP_SYS_RESOURCE the runtime cannot raise its limits that far and fails
#   with "setrlimit ...: Operation not permitted". containers.conf sets
#   default_ulimits to the hard limits this shell has (nproc at most 32768,
#   the largest value the runtime accepted here).
# - crun 1.8 refuses "cgroups in hybrid mode" when
#   /sys/fs/cgroup/unified/cgroup.controllers is not empty. The wrapper runs
#   crun in a private mount namespace in which that file reads empty; host
#   mounts are untouched. It must be named "crun": podman keys its list of
#   runtimes that support --cgroups=disabled and JSON errors by name.
# - systemd-nspawn needs --register=no --keep-unit (no system bus here) and
#   /usr/lib/os-release in the tree; the benchmark adds that to its rootfs.
set -eu

PACKAGES="podman crun systemd-container bubblewrap"

say() { echo "peers: $*" >&2; }
# Single-quote a value for the shell.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
emit() { printf 'export %s=%s\n' "$1" "$(quote "$2")"; }

install=1
dir=""
for arg in "$@"; do
    case "$arg" in
        --no-install) install=0 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        -*) say "unknown option $arg (use --no-install, DIR)"; exit 2 ;;
        *) [ -z "$dir" ] || { say "only one DIR, please"; exit 2; }; dir=$arg ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    say "needs root (it installs packages; the peers run as root): sudo $0 $*"
    exit 1
fi

# 1. Packages: install only the missing ones, with one apt-get update.
if [ "$install" = 1 ]; then
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        if command -v apt-get >/dev/null 2>&1; then
            say "installing$missing"
            export DEBIAN_FRONTEND=noninteractive
            # Without recommends, as scripts/setup.sh installs: podman's
            # recommends bring netavark, which podman then takes as its
            # network backend for good, in place of the CNI plugins the
            # tests (test_coexistence.py) and the other benchmarks expect.
            if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >/dev/null 2>&1; then
                say "warning: could not install$missing; the benchmark skips what is missing"
            fi
        else
            say "warning: no apt-get; not installing$missing"
        fi
    fi
fi

# 2. The directory for the wrapper and the configuration.
if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/overlayctl-peers.XXXXXX")
else
    mkdir -p "$dir"
fi
dir=$(cd "$dir" && pwd)

podman=$(command -v podman 2>/dev/null || true)
crun=$(command -v crun 2>/dev/null || true)
nspawn=$(command -v systemd-nspawn 2>/dev/null || true)
bwrap=$(command -v bwrap 2>/dev/null || true)
unshare=$(command -v unshare 2>/dev/null || true)

emit PEERS_DIR "$dir"

# 3. podman: containers.conf, and the crun wrapper if the host needs it.
if [ -n "$podman" ]; then
    conf="$dir/containers.conf"
    # Hard limits of this shell (and so of podman, conmon and the runtime).
    nofile=$(awk '/^Max open files/ {print $5}' /proc/$$/limits)
    nproc=$(awk '/^Max processes/ {print $4}' /proc/$$/limits)
    # podman's own default is 1048576 for both; never ask for more than that,
    # nor for more than this shell's hard limits.
    [ "$nofile" = unlimited ] && nofile=1048576
    [ "$nofile" -gt 1048576 ] && nofile=1048576
    [ "$nproc" = unlimited ] && nproc=32768
    [ "$nproc" -gt 32768 ] && nproc=32768
    {
        echo "# Written by overlayctl scripts/bench/peers.sh; used through CONTAINERS_CONF only."
        echo "[containers]"
        echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
    } > "$conf"
    controllers=/sys/fs/cgroup/unified/cgroup.controllers
    # (cgroupfs files report size 0: read the content, do not test -s.)
    if [ -n "$crun" ] && [ -n "$(cat "$controllers" 2>/dev/null)" ]; then
        mkdir -p "$dir/bin"
        cat > "$dir/bin/crun" <<WRAPPER
#!/bin/sh
# crun in a private mount namespace where $controllers reads empty,
# so that crun's hybrid-cgroups check passes; the host's mounts are untouched.
exec unshare -m --propagation private sh -c 'mount --bind /dev/null $controllers && exec $crun "\$@"' crun "\$@"
WRAPPER
        chmod 755 "$dir/bin/crun"
        {
            echo "[engine]"
            echo "runtime = \"crun\""
            echo "[engine.runtimes]"
            echo "crun = [\"$dir/bin/crun\"]"
        } >> "$conf"
        say "podman: crun wrapper for hybrid cgroups ($controllers lists: $(cat "$controllers"))"
    fi
    say "podman: default_ulimits nofile=$nofile nproc=$nproc in $conf"
    emit CONTAINERS_CONF "$conf"
else
    say "podman: not installed"
fi
[ -n "$nspawn" ] || say "systemd-nspawn: not installed"
[ -n "$bwrap" ] || say "bwrap: not installed"

emit PEER_PODMAN "$podman"
emit PEER_NSPAWN "$nspawn"
emit PEER_BWRAP "$bwrap"
emit PEER_UNSHARE "$unshare"
say "done; remove $dir when finished"
