#!/bin/sh
# The picture in docs/measurement.md (docs/growth.svg): `du --watch` on a container that (1) writes a new 20 MB
# file, (2) appends one line to a 30 MB file of its image, which copies the
# whole file up into its upper dir, (3) deletes a file of its image (a
# whiteout), and (4) writes 20 MB to a named volume, which never lands in
# the upper dir (the chart stacks it on the upper dir). Writes docs/growth.svg and
# docs/growth.csv (or $OUT/...). Runs as root, in a private store under
# /var/tmp (on disk: tmpfs has no writeback, and so no written-bytes count)
# that is removed at the end with everything in it.
#
#   sudo scripts/growth-demo.sh                        # this checkout's code
#   sudo OVERLAYCTL=overlayctl scripts/growth-demo.sh  # the installed command
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$HERE/docs}
if [ "$(id -u)" != 0 ]; then
    echo "growth-demo: overlayfs and namespaces need root; run it with sudo" >&2
    exit 1
fi
# This checkout's code when python3 has its dependencies, else the installed
# command (setup.sh's virtualenv), which must be recent enough to have `du`.
if [ -z "${OVERLAYCTL:-}" ]; then
    if python3 -c 'import click, psutil, pyroute2' 2>/dev/null; then
        OVERLAYCTL="python3 -m overlayctl"
        export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
    else
        OVERLAYCTL=overlayctl
    fi
fi
if ! $OVERLAYCTL du --help >/dev/null 2>&1; then
    echo "growth-demo: \"$OVERLAYCTL\" has no du command; reinstall it (scripts/setup.sh) or set OVERLAYCTL" >&2
    exit 1
fi
WORK=$(mktemp -d /var/tmp/overlayctl-growth.XXXXXX)
export OVERLAYCTL_ROOT="$WORK/root" OVERLAYCTL_RUNROOT="$WORK/run"
HELPER=""

cleanup() {
    [ -z "$HELPER" ] || kill "$HELPER" 2>/dev/null || true
    $OVERLAYCTL rm -f growth >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

sh "$HERE/scripts/busybox-rootfs.sh" "$WORK/bb.tar"
step "overlayctl import busybox-rootfs.tar bb:1"
$OVERLAYCTL import "$WORK/bb.tar" bb:1

# Decimal megabytes, the units of the chart's axis.
mkdir "$WORK/ctx"
printf 'FROM bb:1\nRUN dd if=/dev/urandom of=/big bs=1000000 count=30\n' >"$WORK/ctx/Dockerfile"
step "overlayctl build -t big:1 .    # FROM bb:1 / RUN dd ... of=/big (30 MB in an image layer)"
$OVERLAYCTL build -q -t big:1 "$WORK/ctx"

# The container waits for /ctl/go, so that sampling starts before it writes.
SCRIPT='while [ ! -e /ctl/go ]; do sleep 0.1; done; sleep 1
dd if=/dev/urandom of=/new.bin bs=1000000 count=20 2>/dev/null; sleep 2
echo appended >> /big; sleep 2
rm /etc/group; sleep 1
dd if=/dev/urandom of=/data/vol.bin bs=1000000 count=20 2>/dev/null; sleep 2'
step "overlayctl run -d --name growth --network none -v ctl:/ctl -v data:/data big:1 sh -c '...'"
$OVERLAYCTL run -d --name growth --network none -v ctl:/ctl -v data:/data big:1 sh -c "$SCRIPT"

mkdir -p "$OUT"
LOG="$WORK/du.log"
: >"$LOG"
# Say go once the header and the first sample are out.
(
    i=0
    while [ "$(wc -l <"$LOG")" -lt 2 ] && [ "$i" -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    touch "$OVERLAYCTL_ROOT/volumes/ctl/_data/go"
) &
HELPER=$!
step "overlayctl du --watch --interval 0.2 --plot $OUT/growth.svg --output $OUT/growth.csv growth"
$OVERLAYCTL du --watch --interval 0.2 --plot "$OUT/growth.svg" --output "$OUT/growth.csv" growth | tee "$LOG"
HELPER=""
[ -s "$OUT/growth.svg" ] && [ -s "$OUT/growth.csv" ] || {
    echo "growth-demo: du --watch wrote no chart" >&2
    exit 1
}

UPPER=$(find "$OVERLAYCTL_ROOT/containers" -mindepth 2 -maxdepth 2 -name upper)
step "du -s --block-size=1 .../upper .../volumes/data/_data   # the last sample is du's figure"
du -s --block-size=1 "$UPPER" "$OVERLAYCTL_ROOT/volumes/data/_data"
step "overlayctl du growth"
$OVERLAYCTL du growth
step "overlayctl du --top 3 growth"
$OVERLAYCTL du --top 3 growth
printf '\nwrote %s and %s\n' "$OUT/growth.svg" "$OUT/growth.csv"
