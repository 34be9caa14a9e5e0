#!/bin/sh
# Set up overlayctl on a fresh Debian 12 / Ubuntu host, as root, then
# optionally run the demo or the test suite:
#
#   scripts/setup.sh          install only
#   scripts/setup.sh demo     install, then the storage walkthrough (scripts/demo.sh)
#   scripts/setup.sh test     install, then lint and the whole test suite (scripts/test.sh)
#   scripts/setup.sh test-setup  install with what the tests need, run nothing
#
# Installs the system packages, a virtualenv under /opt/overlayctl/venv with
# the package and its test tools, and /usr/local/bin/overlayctl.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${OVERLAYCTL_VENV:-/opt/overlayctl/venv}

if [ "$(id -u)" != 0 ]; then
    echo "overlayctl setup: needs root (it installs packages and mounts overlayfs): sudo $0 $*" >&2
    exit 1
fi

# System packages: Python with venv and headers, and libcap-dev, which
# python-prctl compiles against; libseccomp2, which pyseccomp loads to
# compile seccomp profiles; busybox-static is the tests' base image;
# debootstrap and systemd-container (systemd-nspawn) build and boot the
# guest of the systemd test; python3-nftables is libnftables' own binding,
# through which bridge networks keep their isolation table; tini is the
# init of `run --init` (its tini-static runs in images with no C library);
# systemd gives systemd-socket-activate and systemd-analyze, with which the
# tests start the Engine API service as its socket unit does and check the
# unit files (a package, not an init: the host's PID 1 is left alone).
PACKAGES="python3 python3-venv python3-dev gcc libcap-dev libseccomp2 busybox-static tar gzip xz-utils zstd bzip2 util-linux coreutils debootstrap systemd systemd-container python3-nftables tini"
# The registry tests push and pull through real peers: Debian's
# docker-registry (the CNCF distribution registry), skopeo and podman; the
# network tests run containers beside Docker's (docker.io), whose daemon
# they start themselves with temporary roots. The Engine API tests drive
# overlayctl with the real clients: docker.io's /usr/bin/docker and
# docker-compose (1.29, which runs on Debian's python3-docker, apart from
# the venv's docker-py); the API benchmark starts docker.io's dockerd.
# The quota tests make their own ext4 and xfs filesystems (mkfs.ext4 -O
# quota,project, mkfs.xfs).
case "${1:-}" in
    test|test-setup) PACKAGES="$PACKAGES docker-registry skopeo podman docker.io docker-compose e2fsprogs xfsprogs" ;;
esac
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "overlayctl setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The tests start their own registry on 127.0.0.1. Debian's package
    # would start and enable one on every interface (port 5000): no service
    # may start during the install, and the registry's stays disabled. The
    # same for dockerd: a test starts its own, and a system one would keep
    # its docker0 and rules on the host for good.
    # (A policy-rc.d the host already has is left as it is.)
    made_policy=""
    case "$missing" in
        *docker-registry*|*docker.io*)
            if [ ! -e /usr/sbin/policy-rc.d ]; then
                printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
                chmod 755 /usr/sbin/policy-rc.d
                made_policy=1
                trap 'rm -f /usr/sbin/policy-rc.d' EXIT
            fi
            ;;
    esac
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    if [ -n "$made_policy" ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    if [ -d /run/systemd/system ] && systemctl is-enabled docker-registry >/dev/null 2>&1; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
    case "$missing" in
        *docker.io*)
            if [ -d /run/systemd/system ]; then
                systemctl disable --now docker.socket docker.service >/dev/null 2>&1 || true
            fi
            ;;
    esac
fi

# The Debian interpreter, not whatever python3 is first on PATH: its
# headers are the ones python3-dev installed.
if [ ! -x "$VENV/bin/python" ]; then
    /usr/bin/python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip "setuptools>=77" >/dev/null
# A regular (not editable) install: an editable one adds an import hook
# that every `overlayctl run` would pay for at start-up.
"$VENV/bin/pip" install -q "$HERE[test]"
# The compiled parts, layer/_batchwrite.c and runtime/_kernel.c (gcc and
# python3-dev above): the install built them for the venv; the tests import
# the package from this checkout, so they are built here as well. A build
# that fails is reported; overlayctl then unpacks layers without the batch
# writer and makes its syscalls through ctypes, each more slowly.
if ! (cd "$HERE" && "$VENV/bin/python" setup.py -q build_ext --inplace >/dev/null 2>&1); then
    echo "overlayctl setup: warning: overlayctl/layer/_batchwrite.c or overlayctl/runtime/_kernel.c did not compile; overlayctl works without them, more slowly" >&2
fi

# libnftables' binding is not on PyPI: Debian's, linked into the venv (the
# venv sees no system packages, and should not see all of them for this
# one). It is built for the same /usr/bin/python3 as the venv.
SITE_PACKAGES=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
NFTABLES=$(/usr/bin/python3 -c 'import nftables, os; print(os.path.dirname(nftables.__file__))')
ln -sfn "$NFTABLES" "$SITE_PACKAGES/nftables"

# The launcher: the venv's interpreter isolated (-I: no user site, no
# PYTHONPATH surprises) and without the site module (-S), which would read
# every .pth file and the distribution's sitecustomize on each start-up;
# the venv's site-packages is put on the path by hand instead.
# The run path's compiled code in one file (overlayctl/util/codebundle.py),
# for the installed package and for this checkout: the launcher loads it
# with one read instead of forty imports. A module edited since is
# imported as usual, so a stale bundle costs speed, never correctness.
"$VENV/bin/python" -I -c 'import sys; sys.path.append(sys.argv[1]); from overlayctl.util import codebundle; codebundle.build(sys.argv[2])' "$SITE_PACKAGES" "$SITE_PACKAGES/overlayctl" >/dev/null
(cd "$HERE" && "$VENV/bin/python" -I -m overlayctl.util.codebundle overlayctl >/dev/null) || true
cat > /usr/local/bin/overlayctl <<LAUNCHER
#!$VENV/bin/python -IS
import sys
sys.path.append("$SITE_PACKAGES")
from overlayctl.util.codebundle import install
install()
from overlayctl.cli import main
main()
LAUNCHER
chmod 755 /usr/local/bin/overlayctl
echo "overlayctl setup: $(/usr/local/bin/overlayctl --version) installed in $VENV"

case "${1:-}" in
    demo) exec sh "$HERE/scripts/demo.sh" ;;
    test) exec sh "$HERE/scripts/test.sh" ;;
    ""|test-setup) ;;
    *) echo "overlayctl setup: unknown action \"$1\" (use demo, test or test-setup)" >&2; exit 2 ;;
esac
