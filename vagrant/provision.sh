#!/bin/sh
# Vagrant's provisioner, as root in the VM: install overlayctl from the
# synced checkout (/vagrant) and run the whole suite, exactly as the README's
# `sudo scripts/setup.sh test` does on a host. OVERLAYCTL_VM_ACTION picks
# `test` (the default), `demo`, `test-setup` (the install and the test
# suite's packages, no tests: scripts/vagrant-test.sh then runs a
# selection) or `install` (setup only).
set -eu
cd /vagrant
action=${OVERLAYCTL_VM_ACTION:-test}
[ "$action" = install ] && action=""

# Under QEMU's TCG (no KVM: systemd-detect-virt says "qemu"), translated
# guest code is looked up by virtual address, so with address-space
# randomisation every new process translates ld.so and libc afresh: a
# fork+exec costs about 45 ms instead of 17 ms. This VM only runs tests,
# so randomisation is turned off until it reboots.
virt=$(systemd-detect-virt 2>/dev/null || true)
if [ "$virt" = qemu ]; then
    sysctl -q kernel.randomize_va_space=0
    echo "provision: QEMU TCG: kernel.randomize_va_space=0 for this boot"
fi

# A wheelhouse from the host (scripts/vagrant-test.sh) replaces PyPI.
wheels=/var/cache/overlayctl/wheels
if [ -n "$(ls "$wheels" 2>/dev/null)" ]; then
    export PIP_NO_INDEX=1 PIP_FIND_LINKS=$wheels
    echo "provision: pip installs from the host's $(ls "$wheels" | wc -l) downloaded packages in $wheels"
fi

echo "provision: $(uname -srm) ($virt), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"
start=$(date +%s)
status=0
sh scripts/setup.sh $action || status=$?
echo "provision: scripts/setup.sh ${action:-(install only)} exited $status after $(( $(date +%s) - start )) s"
exit "$status"
