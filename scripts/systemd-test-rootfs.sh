#!/bin/sh
# The root filesystem that tests/integration/test_systemd.py boots with
# systemd-nspawn (systemd as PID 1): a minimal Debian bookworm (or, on an
# Ubuntu host, that Ubuntu release: the guest's Python must be the host's,
# because the test installs wheels built on the host), made once with
# debootstrap and kept in a cache directory:
#
#   scripts/systemd-test-rootfs.sh [CACHE_DIR]
#
# CACHE_DIR defaults to $OVERLAYCTL_SYSTEMD_ROOTFS_CACHE or
# /var/cache/overlayctl/systemd-rootfs. Prints the root filesystem's path.
# It is rebuilt when this script, the suite, the mirror or the package list
# changes (their sha256 is the stamp), built beside the old one and
# renamed into place, under a lock: a crash or a second test run never sees
# half a tree. The test never writes to it (it boots it with
# --volatile=overlay).
#
# $OVERLAYCTL_DEBIAN_MIRROR overrides the mirror.
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "systemd-test-rootfs: needs root (debootstrap): sudo $0 $*" >&2
    exit 1
fi
for tool in debootstrap flock sha256sum; do
    command -v "$tool" >/dev/null || {
        echo "systemd-test-rootfs: $tool is missing; run scripts/setup.sh (it installs debootstrap)" >&2
        exit 1
    }
done

CACHE=${1:-${OVERLAYCTL_SYSTEMD_ROOTFS_CACHE:-/var/cache/overlayctl/systemd-rootfs}}
SETUP=$(dirname "$0")/setup.sh
# shellcheck disable=SC1091
ID=$(. /etc/os-release && echo "${ID:-}")
if [ "$ID" = ubuntu ]; then
    SUITE=$(. /etc/os-release && echo "$VERSION_CODENAME")
    MIRROR=${OVERLAYCTL_DEBIAN_MIRROR:-http://archive.ubuntu.com/ubuntu}
else
    SUITE=bookworm
    MIRROR=${OVERLAYCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi
# systemd as PID 1, iproute2 for the bridge network, and everything
# scripts/setup.sh installs, so that it needs no apt inside the guest
# (which has no network but its own). dbus by name: debootstrap does not
# resolve the "dbus-system-bus" alternative systemd-container depends on.
SETUP_PACKAGES=$(sed -n 's/^PACKAGES="\(.*\)"$/\1/p' "$SETUP")
if [ -z "$SETUP_PACKAGES" ]; then
    echo "systemd-test-rootfs: no PACKAGES=\"...\" line in $SETUP" >&2
    exit 1
fi
PACKAGES=$(echo systemd dbus iproute2 $SETUP_PACKAGES | tr ' ' '\n' | sort -u | paste -sd, -)

STAMP=$({ cat "$0"; echo "$SUITE $MIRROR $PACKAGES"; } | sha256sum | cut -d' ' -f1)
ROOTFS=$CACHE/rootfs

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9

if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$STAMP" ] && [ -x "$ROOTFS/usr/lib/systemd/systemd" ]; then
    echo "$ROOTFS"
    exit 0
fi

NEW=$CACHE/rootfs.new
rm -rf "$NEW" "$CACHE/rootfs.old" "$CACHE/stamp"
echo "systemd-test-rootfs: debootstrap $SUITE from $MIRROR into $NEW" >&2
start=$(date +%s)
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$NEW" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
    cp "$NEW/debootstrap/debootstrap.log" "$CACHE/debootstrap-detail.log" 2>/dev/null || true
    tail -n 20 "$CACHE/debootstrap.log" >&2
    echo "systemd-test-rootfs: debootstrap failed; see $CACHE/debootstrap.log and debootstrap-detail.log" >&2
    rm -rf "$NEW"
    exit 1
fi

# Boot straight to multi-user with nothing that waits for hardware, a
# terminal or a network the guest does not have: nspawn gives it a pipe
# for a console and (in the test) a private network namespace with only lo.
for unit in console-getty.service getty@.service serial-getty@.service \
    systemd-networkd-wait-online.service systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer dpkg-db-backup.timer; do
    ln -sf /dev/null "$NEW/etc/systemd/system/$unit"
done
echo overlayctl-systemd-test >"$NEW/etc/hostname"
# An empty machine-id: systemd makes a transient one at each boot.
: >"$NEW/etc/machine-id"
chroot "$NEW" apt-get clean
rm -rf "$NEW/var/lib/apt/lists/"*

if [ -d "$ROOTFS" ]; then
    mv "$ROOTFS" "$CACHE/rootfs.old"
fi
mv "$NEW" "$ROOTFS"
rm -rf "$CACHE/rootfs.old"
echo "$STAMP" >"$CACHE/stamp"
echo "systemd-test-rootfs: built in $(($(date +%s) - start)) s" >&2
echo "$ROOTFS"
