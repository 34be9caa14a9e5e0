#!/bin/sh
# The source document's walkthrough with overlayctl: a busybox base image,
# two Dockerfiles that share layers, their history, five containers started
# from the second image, and what copy-on-write costs each one.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
OVERLAYCTL=${OVERLAYCTL:-overlayctl}
ROOT=$($OVERLAYCTL --help >/dev/null && echo "${OVERLAYCTL_ROOT:-/var/lib/overlayctl}")
TAR=$(mktemp --suffix=.tar)
CTX=$(mktemp -d)
trap 'rm -rf "$TAR" "$CTX"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

sh "$HERE/scripts/busybox-rootfs.sh" "$TAR"
step "overlayctl import busybox-rootfs.tar bb:1"
$OVERLAYCTL import "$TAR" bb:1
step "overlayctl image ls"
$OVERLAYCTL image ls

step "overlayctl run --rm bb:1 sh -c 'echo hi from \$(hostname)'"
$OVERLAYCTL run --rm bb:1 sh -c 'echo hi from $(hostname)'

printf '#!/bin/sh\necho "Hello world"\n' >"$CTX/hello.sh"
chmod +x "$CTX/hello.sh"
printf 'FROM bb:1\nCOPY . /app\n' >"$CTX/Dockerfile.base"
printf 'FROM acme/my-base-image:1.0\nCMD /app/hello.sh\n' >"$CTX/Dockerfile"
printf 'Dockerfile*\n' >"$CTX/.dockerignore"
cd "$CTX"
step "cat Dockerfile.base Dockerfile"
cat Dockerfile.base Dockerfile
step "overlayctl build -t acme/my-base-image:1.0 -f Dockerfile.base ."
$OVERLAYCTL build -t acme/my-base-image:1.0 -f Dockerfile.base .
step "overlayctl build -t acme/my-final-image:1.0 -f Dockerfile ."
$OVERLAYCTL build -t acme/my-final-image:1.0 -f Dockerfile .
cd - >/dev/null
step "overlayctl image ls"
$OVERLAYCTL image ls
step "overlayctl history acme/my-base-image:1.0"
$OVERLAYCTL history acme/my-base-image:1.0
step "overlayctl history acme/my-final-image:1.0   # the same layers below, one metadata step on top"
$OVERLAYCTL history acme/my-final-image:1.0
step "overlayctl run --rm acme/my-final-image:1.0"
$OVERLAYCTL run --rm acme/my-final-image:1.0

for i in 1 2 3 4 5; do
    $OVERLAYCTL rm -f "my_container_$i" >/dev/null 2>&1 || true
done
step "overlayctl run -dit --name my_container_N acme/my-final-image:1.0 sh   (N = 1..5)"
for i in 1 2 3 4 5; do
    $OVERLAYCTL run -dit --name "my_container_$i" acme/my-final-image:1.0 sh
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
