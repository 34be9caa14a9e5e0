#!/bin/sh
# The source document's walkthrough with overlayctl: one busybox base image,
# five containers started from it, and what copy-on-write costs each one.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
OVERLAYCTL=${OVERLAYCTL:-overlayctl}
ROOT=$($OVERLAYCTL --help >/dev/null && echo "${OVERLAYCTL_ROOT:-/var/lib/overlayctl}")
TAR=$(mktemp --suffix=.tar)
trap 'rm -f "$TAR"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

sh "$HERE/scripts/busybox-rootfs.sh" "$TAR"
step "overlayctl import busybox-rootfs.tar bb:1"
$OVERLAYCTL import "$TAR" bb:1
step "overlayctl image ls"
$OVERLAYCTL image ls

step "overlayctl run --rm bb:1 sh -c 'echo hi from \$(hostname)'"
$OVERLAYCTL run --rm bb:1 sh -c 'echo hi from $(hostname)'

for i in 1 2 3 4 5; do
    $OVERLAYCTL rm -f "my_container_$i" >/dev/null 2>&1 || true
done
step "overlayctl run -dit --name my_container_N bb:1 sh   (N = 1..5)"
for i in 1 2 3 4 5; do
    $OVERLAYCTL run -dit --name "my_container_$i" bb:1 sh
done
step "overlayctl ps"
$OVERLAYCTL ps
step "ls $ROOT/containers"
ls "$ROOT/containers"
step "overlayctl ps -s    # size = the thin writable layer, virtual = plus the shared image"
$OVERLAYCTL ps -s
step "du -s --block-size=1 $ROOT/containers/*/upper   # the same bytes, counted by du"
du -s --block-size=1 "$ROOT"/containers/*/upper
step "grep -c overlay /proc/self/mountinfo   # the overlays live only in each container's mount namespace"
grep -c " - overlay " /proc/self/mountinfo || true
step "overlayctl rm -f my_container_1 ... my_container_5"
for i in 1 2 3 4 5; do
    $OVERLAYCTL rm -f "my_container_$i"
done
