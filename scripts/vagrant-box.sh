#!/bin/sh
# Build a Vagrant box for the libvirt provider from debootstrap, offline from
# any box registry: only a Debian mirror is needed.
#
#   scripts/vagrant-box.sh [OUTPUT.box]      (default: build/vagrant/overlayctl-debian12.box)
#
# The box is a Debian 12 with the distribution kernel (overlayfs, namespaces,
# cgroup v2), systemd, sshd, sudo, python3 and rsync, and a `vagrant` user
# with passwordless sudo that logs in with a key generated for this box (the
# private half travels inside the box, and the box's Vagrantfile points
# Vagrant at it). The disk is one MBR partition with ext4, made with
# `mkfs.ext4 -d` from the debootstrap tree, and GRUB written into the MBR and
# the gap after it: no loop device, no mount on the host.
#
# Environment: MIRROR (default http://deb.debian.org/debian, as the host's
# apt uses), SECURITY_MIRROR, SUITE (bookworm), DISK_GB (20), CACHE_DIR for
# debootstrap's downloaded packages (/var/cache/overlayctl/vagrant-box-debs).
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$HERE/build/vagrant/overlayctl-debian12.box}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=${SUITE:-bookworm}
DISK_GB=${DISK_GB:-20}
CACHE_DIR=${CACHE_DIR:-/var/cache/overlayctl/vagrant-box-debs}

say() { echo "vagrant-box: $*"; }
die() { echo "vagrant-box: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, device nodes in the image): sudo $0 $*"

# Host tools: debootstrap, mkfs.ext4 with -d (e2fsprogs >= 1.43), sfdisk,
# qemu-img, ssh-keygen.
need=""
for pair in debootstrap:debootstrap mkfs.ext4:e2fsprogs sfdisk:fdisk qemu-img:qemu-utils ssh-keygen:openssh-client; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
if [ -n "$need" ]; then
    say "installing$need"
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

WORK=$(mktemp -d /var/tmp/overlayctl-box.XXXXXX)
ROOTFS=$WORK/rootfs
# debootstrap mounts /proc and /sys inside the target while it installs;
# whatever is still mounted under the work directory on any exit is
# detached before the directory goes.
cleanup() {
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the root filesystem --------------------------------------------------
# minbase plus what a Vagrant box needs: an init, a kernel and its
# initramfs, GRUB's BIOS modules, networking by DHCP on eth0, sshd, sudo,
# and python3 and rsync (the synced folder).
PACKAGES=systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,zstd,grub-pc-bin,e2fsprogs,kmod,ifupdown,isc-dhcp-client,iproute2,netbase,openssh-server,sudo,python3,rsync,ca-certificates,procps,less
mkdir -p "$CACHE_DIR"
say "debootstrap $SUITE from $MIRROR"
t0=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE_DIR" \
    "$SUITE" "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
say "debootstrap done in $(( $(date +%s) - t0 )) s"

in_root() { chroot "$ROOTFS" "$@"; }
UUID=$(cat /proc/sys/kernel/random/uuid)

echo debian12 > "$ROOTFS/etc/hostname"
cat > "$ROOTFS/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	debian12
::1		localhost ip6-localhost ip6-loopback
EOF
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" > "$ROOTFS/etc/fstab"

# The same archive as the host, so `apt-get install` in the VM sees what
# the host sees.
rm -f "$ROOTFS/etc/apt/sources.list"
cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# net.ifnames=0 on the kernel command line makes the first NIC eth0 under
# any machine type, so one stanza covers libvirt's and VirtualBox's.
cat > "$ROOTFS/etc/network/interfaces" <<EOF
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF

# The vagrant user: passwordless sudo, and this box's own key.
in_root useradd --create-home --shell /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$ROOTFS/etc/sudoers.d/vagrant"
chmod 440 "$ROOTFS/etc/sudoers.d/vagrant"
ssh-keygen -q -t ed25519 -N '' -C "overlayctl-box-$(date +%Y%m%d)" -f "$WORK/vagrant_private_key"
install -d -m 700 "$ROOTFS/home/vagrant/.ssh"
install -m 600 "$WORK/vagrant_private_key.pub" "$ROOTFS/home/vagrant/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant/.ssh

# sshd: no reverse lookups (there is no DNS for the host's NAT addresses),
# and host keys made on each VM's first boot, not shared by every VM of
# the box. Debian's ssh.service checks its config before starting, which
# fails without keys, hence a unit ordered before it.
echo 'UseDNS no' > "$ROOTFS/etc/ssh/sshd_config.d/vagrant.conf"
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
cat > "$ROOTFS/etc/systemd/system/ssh-hostkeys.service" <<EOF
[Unit]
Description=Generate the SSH host keys of this machine
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable ssh-hostkeys.service >/dev/null 2>&1

# Each VM gets its own machine-id on first boot.
: > "$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"

# --- the boot loader ------------------------------------------------------
# GRUB's BIOS image is built inside the new system from its own modules.
# grub-mkimage fills in how many sectors core.img spans, and boot.img reads
# it from sector 1 by default, so writing boot.img's code into the MBR and
# core.img right after it is all grub-install's BIOS setup would do here.
[ -e "$ROOTFS/vmlinuz" ] && [ -e "$ROOTFS/initrd.img" ] ||
    die "no /vmlinuz or /initrd.img in the new system: did linux-image-amd64 install?"
mkdir -p "$ROOTFS/boot/grub/i386-pc"
cp "$ROOTFS"/usr/lib/grub/i386-pc/*.mod "$ROOTFS"/usr/lib/grub/i386-pc/*.lst "$ROOTFS/boot/grub/i386-pc/"
# The kernel's command line is tuned for QEMU's TCG, where this box mostly
# runs: the TSC as clock source (the HPET it would pick instead costs an
# emulated device access per clock read), 4-level page tables (a 5-level
# walk is one more step for every emulated TLB miss), and no Spectre
# mitigations (return thunks and retpolines only cost time in a test VM).
CMDLINE="root=UUID=$UUID ro net.ifnames=0 console=tty0 console=ttyS0,115200n8 clocksource=tsc tsc=reliable no5lvl mitigations=off"
cat > "$ROOTFS/boot/grub/grub.cfg" <<EOF
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
search --no-floppy --fs-uuid --set=root $UUID
menuentry "Debian GNU/Linux ($SUITE)" {
    linux /vmlinuz $CMDLINE
    initrd /initrd.img
}
EOF
in_root grub-mkimage -O i386-pc -o /core.img -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux search search_fs_uuid configfile echo test serial terminal
mv "$ROOTFS/core.img" "$WORK/core.img"
cp "$ROOTFS/usr/lib/grub/i386-pc/boot.img" "$WORK/boot.img"
core_sectors=$(( ($(stat -c %s "$WORK/core.img") + 511) / 512 ))
[ "$core_sectors" -lt 2047 ] || die "core.img ($core_sectors sectors) does not fit before the partition"

# Package installs in the VM (setup.sh's gcc, python3-dev, ...) fire
# initramfs-tools' trigger, and rebuilding the initramfs takes over ten
# minutes under TCG. The image debootstrap made already boots this kernel;
# a new kernel package still gets its own (update-initramfs -c ignores this).
sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$ROOTFS/etc/initramfs-tools/update-initramfs.conf"

in_root apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*

# --- the disk ---------------------------------------------------------------
# One partition from 1 MiB to the end; the file system is made in place at
# that offset (mkfs.ext4 -E offset) straight from the tree.
DISK=$WORK/disk.raw
truncate -s "${DISK_GB}G" "$DISK"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$DISK"
part_kib=$(( DISK_GB * 1024 * 1024 - 1024 ))
say "mkfs.ext4 -d: ${DISK_GB} GiB disk, root UUID $UUID"
mkfs.ext4 -q -F -L root -U "$UUID" -E offset=1048576 -d "$ROOTFS" "$DISK" "${part_kib}k"
dd if="$WORK/boot.img" of="$DISK" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/core.img" of="$DISK" bs=512 seek=1 conv=notrunc status=none

# --- the box ----------------------------------------------------------------
BOX=$WORK/box
mkdir "$BOX"
qemu-img convert -c -O qcow2 "$DISK" "$BOX/box.img"
rm -f "$DISK"
install -m 600 "$WORK/vagrant_private_key" "$BOX/vagrant_private_key"
cat > "$BOX/metadata.json" <<EOF
{"provider": "libvirt", "format": "qcow2", "virtual_size": $DISK_GB}
EOF
cat > "$BOX/info.json" <<EOF
{"description": "Debian $SUITE from debootstrap, built by overlayctl's scripts/vagrant-box.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"}
EOF
cat > "$BOX/Vagrantfile" <<'EOF'
# Defaults that travel with the box: the key its vagrant user accepts.
Vagrant.configure("2") do |config|
  config.ssh.private_key_path = File.join(__dir__, "vagrant_private_key")
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
EOF
mkdir -p "$(dirname "$OUT")"
tar -C "$BOX" -cf "$OUT.tmp" metadata.json info.json Vagrantfile vagrant_private_key box.img
mv "$OUT.tmp" "$OUT"
say "$OUT ($(du -h "$OUT" | cut -f1)) in $(( $(date +%s) - t0 )) s"
