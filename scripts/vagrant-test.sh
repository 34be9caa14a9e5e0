#!/bin/sh
# Run the whole suite as root in a fresh Debian 12 VM: Vagrant with
# vagrant-libvirt, under QEMU's TCG unless OVERLAYCTL_VM_DRIVER=kvm.
#
#   sudo scripts/vagrant-test.sh            # up (provisioning runs the suite), report, destroy
#   sudo scripts/vagrant-test.sh --keep     # leave the VM running: cd vagrant && vagrant ssh
#
# Installs vagrant, vagrant-libvirt, libvirt and QEMU from Debian when they
# are missing, starts libvirtd (and stops it again) on a host without
# systemd, and builds and adds the box (scripts/vagrant-box.sh) when Vagrant
# does not have it. The VM's output goes to build/vagrant/vagrant-up.log.
# Exits with the suite's status.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
BOX=${OVERLAYCTL_VM_BOX:-overlayctl/debian12}
BOX_FILE=$HERE/build/vagrant/overlayctl-debian12.box
LOG=$HERE/build/vagrant/vagrant-up.log
KEEP=""
case "${1:-}" in
    --keep) KEEP=1 ;;
    "") ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

say() { echo "vagrant-test: $*"; }
die() { echo "vagrant-test: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (libvirt's system instance, packages): sudo $0 $*"

export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DEFAULT_PROVIDER=libvirt
export VAGRANT_CWD=$HERE/vagrant

PACKAGES="vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils dnsmasq-base rsync openssh-client"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# libvirtd: systemd's socket units start it on demand; on a host without
# systemd as PID 1 (a container, this kind of CI machine) it is started here,
# with virtlogd, which QEMU's console logging needs, and stopped at the end.
STARTED=""
libvirt_up() { virsh -q -c qemu:///system version >/dev/null 2>&1; }
if ! libvirt_up; then
    if [ -d /run/systemd/system ]; then
        systemctl start libvirtd.socket virtlogd.socket libvirtd.service
    else
        say "starting virtlogd and libvirtd (no systemd here)"
        mkdir -p /run/libvirt
        # (A socket left by a virtlogd that was killed answers nothing.)
        if ! pgrep -x virtlogd >/dev/null; then
            rm -f /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock
            virtlogd -d
            STARTED="virtlogd"
        fi
        libvirtd -d
        STARTED="$STARTED libvirtd"
    fi
    i=0
    until libvirt_up; do
        i=$((i + 1)); [ "$i" -lt 50 ] || die "libvirtd did not answer on qemu:///system"
        sleep 0.2
    done
fi

finish() {
    status=$?
    set +e
    if [ -z "$KEEP" ]; then
        say "vagrant destroy -f"
        vagrant destroy -f >/dev/null 2>&1 || say "vagrant destroy failed: see \`virsh list --all\`"
        # vagrant-libvirt's management network goes with its last VM; the
        # box's base volume stays in the default pool as Vagrant's cache.
        for s in $STARTED; do
            pidfile=/run/$s.pid
            [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
        done
    elif [ -n "$STARTED" ]; then
        say "left running: the VM,$STARTED (stop: vagrant destroy -f; kill \$(cat /run/libvirtd.pid) \$(cat /run/virtlogd.pid))"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

if ! vagrant box list 2>/dev/null | grep -q "^$BOX "; then
    [ "$BOX" = overlayctl/debian12 ] || die "no box $BOX in \`vagrant box list\`"
    [ -f "$BOX_FILE" ] || sh "$HERE/scripts/vagrant-box.sh" "$BOX_FILE"
    vagrant box add --name "$BOX" "$BOX_FILE"
fi

# The VM's Python packages come from the host: `pip download` here, with
# the host's own pip configuration (index, certificates, constraints), into
# a wheelhouse that the Vagrantfile syncs and provisioning installs from
# with --no-index. The guest then needs no route to PyPI, only the Debian
# mirror for setup.sh's apt-get. Same Python (Debian 12's 3.11) on both
# sides, so the wheels fit; python-prctl comes as an sdist and is compiled
# in the VM, as setup.sh would.
WHEELS=$HERE/build/vagrant/wheels
[ -x /usr/bin/python3 ] && /usr/bin/python3 -m pip --version >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
}
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
say "pip download: the suite's Python packages into $WHEELS"
build_requires=$(/usr/bin/python3 -c 'import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' "$HERE/pyproject.toml")
/usr/bin/python3 -m pip download -q --disable-pip-version-check -d "$WHEELS" \
    pip wheel $build_requires "$HERE[test]" 2>&1 | grep -v '^WARNING: Location' || true
rm -f "$WHEELS"/overlayctl-*
[ -n "$(ls "$WHEELS")" ] || die "pip download left $WHEELS empty"

# A run killed before `vagrant destroy` leaves its domain defined while
# Vagrant has forgotten it ("Name overlayctl_default ... is already taken"):
# that domain is this script's, so it goes, with its own disk.
DOMAIN=overlayctl_default
if vagrant status --machine-readable 2>/dev/null | grep -q ',state,not_created$' &&
    virsh -q -c qemu:///system dominfo "$DOMAIN" >/dev/null 2>&1; then
    say "removing the domain $DOMAIN an earlier run left behind"
    virsh -q -c qemu:///system destroy "$DOMAIN" >/dev/null 2>&1 || true
    virsh -q -c qemu:///system undefine "$DOMAIN" --remove-all-storage >/dev/null
fi

mkdir -p "$(dirname "$LOG")"
say "vagrant up --provider=libvirt (driver ${OVERLAYCTL_VM_DRIVER:-qemu}); output in $LOG"
start=$(date +%s)
rc_file=$(mktemp)
{ rc=0; vagrant up --provider=libvirt || rc=$?; echo "$rc" > "$rc_file"; } 2>&1 | tee "$LOG"
rc=$(cat "$rc_file"); rm -f "$rc_file"
rc=${rc:-130}   # vagrant was interrupted before the status was written
elapsed=$(( $(date +%s) - start ))

# pytest's closing line, and the provisioner's own timing.
summary=$(grep -E '^ *default: =+ .*(passed|failed|error).* in [0-9.]+s' "$LOG" | tail -1 |
    sed -e 's/^ *default: //' -e 's/^=* //' -e 's/ =*$//')
setup_line=$(grep -E 'provision: scripts/setup.sh' "$LOG" | tail -1 | sed 's/^ *default: //')
say "${summary:-no pytest summary in the log}"
say "${setup_line:-provisioning did not finish}"
say "vagrant up exited $rc after ${elapsed} s"
exit "$rc"
