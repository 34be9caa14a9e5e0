#!/bin/sh
# Write a minimal root filesystem tar made from busybox-static to $1.
# The one base image of the demo, the tests and the benchmarks.
set -eu
OUT=${1:?usage: busybox-rootfs.sh OUT.tar}
BUSYBOX=${BUSYBOX:-/bin/busybox}
case "$(ldd "$BUSYBOX" 2>&1)" in
    *"not a dynamic executable"*|*"statically linked"*) ;;
    *) echo "busybox-rootfs: $BUSYBOX is not static; install it: apt-get install busybox-static" >&2; exit 1 ;;
esac
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/etc" "$ROOT/proc" "$ROOT/sys" \
    "$ROOT/dev" "$ROOT/tmp" "$ROOT/root" "$ROOT/var" "$ROOT/run"
chmod 755 "$ROOT"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
# One hardlink per applet, as busybox --install does: the image stays ~1 MB.
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] && continue
    [ -e "$ROOT/bin/$applet" ] || ln "$ROOT/bin/busybox" "$ROOT/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
# Fixed times and sorted names: the same busybox gives the same tar, and so
# the same diff_id, every time.
find "$ROOT" -exec touch -h -d @0 {} +
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$ROOT" -cf "$OUT" .
