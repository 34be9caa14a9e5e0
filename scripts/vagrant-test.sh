#!/bin/sh
# Run the test suite, or a selection of it, as root in a Debian 12 VM:
# Vagrant with vagrant-libvirt, under KVM where this host's /dev/kvm runs a
# guest (a boot-sector probe decides), else under QEMU's TCG.
#
#   sudo scripts/vagrant-test.sh                     # fresh VM, lint and the whole suite, destroy
#   sudo scripts/vagrant-test.sh -- -m quota         # fresh VM, `pytest -m quota` as root, destroy
#   sudo scripts/vagrant-test.sh --keep -- tests/unit -q   # the same, leaving the VM up
#   sudo scripts/vagrant-test.sh --reuse -- -k quota # the VM left up: sync the checkout again, pytest
#   sudo scripts/vagrant-test.sh --reuse --checkout /other/worktree -- -m quota
#   sudo scripts/vagrant-test.sh --down              # destroy the kept VM, stop the daemons started for it
#
# Arguments after `--` go to pytest, run as root from the synced checkout
# (/vagrant) with the VM's venv; without them the suite runs as
# `scripts/setup.sh test` runs it (ruff, then every test). A fresh VM with
# a selection is provisioned with `scripts/setup.sh test-setup` (the
# install and the test suite's packages, no tests), so a run takes minutes.
# --reuse provisions nothing: it copies the checkout in again (rsync over
# Vagrant's ssh settings) and runs pytest. --checkout DIR syncs DIR, another
# checkout of overlayctl, in place of this one. One VM per host (the
# libvirt domain overlayctl_default): runs take turns on a lock
# (/run/lock/overlayctl-vm.lock), so two never interleave.
#
# Installs vagrant, vagrant-libvirt, libvirt and QEMU from Debian when they
# are missing, starts libvirtd (and stops it again, at once or at --down)
# on a host without systemd, and builds and adds the box
# (scripts/vagrant-box.sh) when Vagrant does not have it. Output goes to
# build/vagrant/vagrant-up.log (bringing the VM up) and
# build/vagrant/vagrant-test.log (a selection's pytest). The last lines
# say pytest's summary; the exit status is pytest's (or the suite's).
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
BOX=${OVERLAYCTL_VM_BOX:-overlayctl/debian12}
BOX_FILE=$HERE/build/vagrant/overlayctl-debian12.box
LOG=$HERE/build/vagrant/vagrant-up.log
TEST_LOG=$HERE/build/vagrant/vagrant-test.log
LOCK=/run/lock/overlayctl-vm.lock
# The daemons this script started for a VM that stays up, for --down.
STARTED_FILE=/run/lock/overlayctl-vm.daemons
# /dev/kvm's own mode and group while a VM of this script has it (below).
KVM_FILE=/run/lock/overlayctl-vm.kvm
KEEP=""
REUSE=""
DOWN=""
CHECKOUT=$HERE
SELECTION=""
usage() {
    echo "usage: $0 [--keep | --reuse | --down] [--checkout DIR] [-- PYTEST_ARGS...]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=1 ;;
        --reuse) REUSE=1 ;;
        --down) DOWN=1 ;;
        --checkout)
            [ $# -ge 2 ] || usage
            CHECKOUT=$(cd "$2" 2>/dev/null && pwd) || { echo "vagrant-test: no directory $2" >&2; exit 2; }
            shift ;;
        --checkout=*)
            CHECKOUT=$(cd "${1#--checkout=}" 2>/dev/null && pwd) || { echo "vagrant-test: no directory ${1#--checkout=}" >&2; exit 2; }
            ;;
        --) shift; SELECTION=1; break ;;
        *) usage ;;
    esac
    shift
done
[ -z "$DOWN" ] || [ -z "$KEEP$REUSE$SELECTION" ] || usage
[ -z "$KEEP" ] || [ -z "$REUSE" ] || usage
[ -z "$SELECTION" ] || [ $# -gt 0 ] || { echo "vagrant-test: nothing after --: give pytest's arguments (tests/unit, -m quota, ...)" >&2; exit 2; }
[ -f "$CHECKOUT/overlayctl/__init__.py" ] && [ -f "$CHECKOUT/scripts/setup.sh" ] ||
    { echo "vagrant-test: $CHECKOUT is not a checkout of overlayctl" >&2; exit 2; }

say() { echo "vagrant-test: $*"; }
die() { echo "vagrant-test: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (libvirt's system instance, packages): sudo $0 $*"

# One run at a time: the VM, its domain name and libvirt's network are the
# host's, whichever checkout asks.
mkdir -p "$(dirname "$LOCK")"
exec 9>>"$LOCK"
if ! flock -n 9; then
    say "waiting for the run that holds $LOCK"
    flock 9
fi

export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DEFAULT_PROVIDER=libvirt
export VAGRANT_CWD=$HERE/vagrant
# What the Vagrantfile syncs to /vagrant.
export OVERLAYCTL_VM_CHECKOUT=$CHECKOUT

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
# with virtlogd, which QEMU's console logging needs, and stopped at the end
# (at --down when the VM stays up).
STARTED=""
libvirt_up() { virsh -q -c qemu:///system version >/dev/null 2>&1; }
if [ -z "$DOWN" ] && ! libvirt_up; then
    if [ -d /run/systemd/system ]; then
        systemctl start libvirtd.socket virtlogd.socket libvirtd.service
    else
        say "starting virtlogd and libvirtd (no systemd here)"
        mkdir -p /run/libvirt
        # (A socket left by a virtlogd that was killed answers nothing.)
        if ! pgrep -x virtlogd >/dev/null; then
            rm -f /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock
            virtlogd -d 9>&-   # (not holding the run lock for as long as it lives)
            STARTED="virtlogd"
        fi
        libvirtd -d 9>&-
        STARTED="$STARTED libvirtd"
    fi
    i=0
    until libvirt_up; do
        i=$((i + 1)); [ "$i" -lt 50 ] || die "libvirtd did not answer on qemu:///system"
        sleep 0.2
    done
fi

stop_daemons() {
    for s in "$@"; do
        pidfile=/run/$s.pid
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    done
    return 0
}
restore_kvm() {
    if [ -f "$KVM_FILE" ]; then
        read -r mode group < "$KVM_FILE"
        chgrp "$group" /dev/kvm && chmod "$mode" /dev/kvm && say "/dev/kvm: back to $mode $group"
        rm -f "$KVM_FILE"
    fi
    return 0
}

if [ -n "$DOWN" ]; then
    say "vagrant destroy -f"
    status=0
    vagrant destroy -f >/dev/null 2>&1 || { status=1; say "vagrant destroy failed: see \`virsh list --all\`"; }
    if [ -f "$STARTED_FILE" ]; then
        started=$(cat "$STARTED_FILE")
        say "stopping$started"
        stop_daemons $started
        rm -f "$STARTED_FILE"
    fi
    restore_kvm
    exit "$status"
fi

vm_state() {
    vagrant status --machine-readable 2>/dev/null | awk -F, '$3 == "state" { print $4 }' | tail -1
}

# Quoted for a POSIX shell: one word, whatever it holds.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# pytest's closing line in a log ("== 3 passed in 1.2s ==", or with -q
# "3 passed in 1.2s"), without Vagrant's prefix and the rules.
summary_of() {
    grep -E '(passed|failed|error|errors|skipped|deselected|xfailed|xpassed|no tests ran).* in [0-9.]+s( \([0-9:]+\))? *=*\r?$' "$1" |
        tail -1 | tr -d '\r' | sed -e 's/^ *default: //' -e 's/^=* //' -e 's/ =*$//'
}

# The selection (or, without one, scripts/test.sh: ruff and the whole
# suite) as root in /vagrant, from the venv provisioning made. The C
# extensions are built again when the sync brought sources newer than them
# (setup.py compares the times; nothing to do costs a second).
run_tests() {
    if [ -n "$SELECTION" ]; then
        args=""
        for a in "$@"; do args="$args $(quote "$a")"; done
        inner="cd /vagrant && { /opt/overlayctl/venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>&1 || echo 'vagrant-test: the C extensions did not build; the tests use ctypes'; } && exec /opt/overlayctl/venv/bin/python -m pytest -p no:cacheprovider$args"
        say "in the VM, as root: pytest$args (output in $TEST_LOG)"
    else
        inner="cd /vagrant && exec sh scripts/test.sh"
        say "in the VM, as root: scripts/test.sh (output in $TEST_LOG)"
    fi
    rc_file=$(mktemp)
    { rc=0; vagrant ssh -c "sudo sh -c $(quote "$inner")" -- -o LogLevel=ERROR </dev/null || rc=$?; echo "$rc" > "$rc_file"; } 2>&1 | tee "$TEST_LOG"
    rc=$(cat "$rc_file"); rm -f "$rc_file"
    rc=${rc:-130}
    summary=$(summary_of "$TEST_LOG")
    say "${summary:-no pytest summary in $TEST_LOG}"
    say "pytest exited $rc"
    return "$rc"
}

mkdir -p "$(dirname "$LOG")"

if [ -n "$REUSE" ]; then
    [ "$(vm_state)" = running ] ||
        die "no VM up to reuse (state: $(vm_state)): start one with \`$0 --keep -- ARGS\`"
    # rsync over Vagrant's own ssh settings, not `vagrant rsync`: that one
    # copies the folder the VM was brought up with (Vagrant keeps the synced
    # folders of `up`), whatever --checkout says now. The excludes are the
    # Vagrantfile's.
    say "rsync: $CHECKOUT to /vagrant"
    ssh_config=$(mktemp)
    vagrant ssh-config > "$ssh_config" 2>/dev/null || { rm -f "$ssh_config"; die "vagrant ssh-config failed"; }
    host=$(awk '$1 == "Host" { print $2; exit }' "$ssh_config")
    rsync -a --delete --rsync-path="sudo rsync" -e "ssh -F $ssh_config" \
        --exclude=/.git --exclude=/vagrant/.vagrant/ --exclude=/build/ --exclude=/.hypothesis/ \
        --exclude=/.mypy_cache/ --exclude=/.ruff_cache/ --exclude=/.pytest_cache/ \
        --exclude=/.benchmarks/ --exclude='*.egg-info/' --exclude=__pycache__/ \
        "$CHECKOUT/" "$host:/vagrant/" || { rm -f "$ssh_config"; die "rsync of $CHECKOUT to the VM failed"; }
    rm -f "$ssh_config"
    rc=0
    run_tests "$@" || rc=$?
    exit "$rc"
fi

# A VM already up is someone's --keep: a fresh run would destroy it at the
# end, so it is reused or taken down on purpose, never in passing.
state=$(vm_state)
case "$state" in
    ""|not_created) ;;
    *) die "a VM is already up (state: $state): $0 --reuse -- PYTEST_ARGS, or $0 --down first" ;;
esac

# KVM when this host's /dev/kvm runs a guest, and faster than QEMU's TCG:
# QEMU boots a boot sector under each whose only instruction writes to the
# isa-debug-exit port, so the exit status says that guest code ran, and the
# time says at what cost. A /dev/kvm that opens is not enough: in some
# sandboxed VMs it runs guests, but every exit costs milliseconds (here
# SeaBIOS took 3.3 s under it, 0.08 s under TCG, and a Debian kernel did
# not get past its decompressor in 3 minutes, where TCG boots in one).
probe_ms() {   # accelerator, boot sector image: milliseconds, or nothing if no guest code ran
    t0=$(date +%s%N)
    code=0
    # (kvm64: the CPU the Vagrantfile gives a KVM guest.)
    timeout 60 qemu-system-x86_64 -accel "$1" -cpu kvm64 -display none -nodefaults -no-reboot -m 16 \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 -drive file="$2",format=raw >/dev/null 2>&1 || code=$?
    [ "$code" = 99 ] && echo $(( ($(date +%s%N) - t0) / 1000000 ))   # (0x31 << 1) | 1
    return 0
}
pick_driver() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo qemu; return; }
    probe=$(mktemp)
    # mov al, 0x31; out 0xf4, al; hlt; jmp $-1 ... 0x55 0xaa at 510.
    printf '\260\061\346\364\364\353\375' > "$probe"
    truncate -s 510 "$probe"
    printf '\125\252' >> "$probe"
    kvm=$(probe_ms kvm "$probe")
    tcg=$(probe_ms tcg "$probe")
    rm -f "$probe"
    say "probe: a boot sector under KVM ${kvm:-did not run}${kvm:+ ms}, under TCG ${tcg:-did not run}${tcg:+ ms}" >&2
    if [ -n "$kvm" ] && { [ -z "$tcg" ] || [ "$kvm" -le "$tcg" ]; }; then echo kvm; else echo qemu; fi
}
if [ -z "${OVERLAYCTL_VM_DRIVER:-}" ]; then
    OVERLAYCTL_VM_DRIVER=$(pick_driver)
    export OVERLAYCTL_VM_DRIVER
fi
# libvirt runs QEMU as libvirt-qemu, in the group kvm, which udev's rule
# lets at /dev/kvm (0660 root:kvm). A host without udev leaves the node
# 0600 root:root; it gets udev's mode and group for as long as a VM of this
# script runs, and its own back at the end (at --down for a kept VM).
if [ "$OVERLAYCTL_VM_DRIVER" = kvm ] && [ "$(stat -c %G /dev/kvm)" != kvm ] && getent group kvm >/dev/null; then
    stat -c '%a %G' /dev/kvm > "$KVM_FILE"
    say "/dev/kvm: $(cat "$KVM_FILE") -> 660 kvm, as udev would, until the VM goes"
    chgrp kvm /dev/kvm
    chmod 660 /dev/kvm
fi

if [ -n "$SELECTION" ]; then
    export OVERLAYCTL_VM_ACTION=test-setup
else
    export OVERLAYCTL_VM_ACTION=${OVERLAYCTL_VM_ACTION:-test}
fi

finish() {
    status=$?
    set +e
    if [ -z "$KEEP" ]; then
        say "vagrant destroy -f"
        vagrant destroy -f >/dev/null 2>&1 || say "vagrant destroy failed: see \`virsh list --all\`"
        # vagrant-libvirt's management network goes with its last VM; the
        # box's base volume stays in the default pool as Vagrant's cache.
        stop_daemons $STARTED
        restore_kvm
    else
        [ -z "$STARTED" ] || echo "$STARTED" >> "$STARTED_FILE"
        say "left running: the VM$( [ -f "$STARTED_FILE" ] && printf ', %s' "$(cat "$STARTED_FILE")")"
        say "  again after an edit: $0 --reuse -- PYTEST_ARGS; shell: cd vagrant && vagrant ssh; stop: $0 --down"
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

say "vagrant up --provider=libvirt (driver $OVERLAYCTL_VM_DRIVER, setup.sh $OVERLAYCTL_VM_ACTION); output in $LOG"
start=$(date +%s)
rc_file=$(mktemp)
{ rc=0; vagrant up --provider=libvirt || rc=$?; echo "$rc" > "$rc_file"; } 2>&1 | tee "$LOG"
rc=$(cat "$rc_file"); rm -f "$rc_file"
rc=${rc:-130}   # vagrant was interrupted before the status was written
elapsed=$(( $(date +%s) - start ))

# The provisioner's own timing, and without a selection pytest's closing
# line (the suite ran in provisioning).
setup_line=$(grep -E 'provision: scripts/setup.sh' "$LOG" | tail -1 | sed 's/^ *default: //')
say "${setup_line:-provisioning did not finish}"
say "vagrant up exited $rc after ${elapsed} s"
if [ -z "$SELECTION" ]; then
    summary=$(summary_of "$LOG")
    say "${summary:-no pytest summary in the log}"
    exit "$rc"
fi
[ "$rc" = 0 ] || exit "$rc"
rc=0
run_tests "$@" || rc=$?
exit "$rc"
