#!/bin/busybox sh
# /init of the stock-kernel VM's initramfs (test/support/stock-kernel-vm.ts builds the
# initramfs: this file, a static busybox from Debian's busybox-static, and the few modules
# listed below with a modules.dep for them). It runs as PID 1 under Debian's generic kernel
# and makes the HOST's root file system the guest's root:
#   - the host's / comes in read-only over 9p (qemu -virtfs ... readonly=on); Debian's
#     generic kernel (linux-image-amd64) has 9p as modules; its cloud kernel has none;
#   - an overlay with a tmpfs upper layer over it, so that the guest may write anywhere
#     (/etc, /var, /usr/local...) and nothing it writes reaches the host;
# then hands over to the second stage, guest.sh (read from the repo through that root) as
# PID 1 of the new root. Any failure here powers the VM off with a message on the console
# (ttyS0), which the harness shows.
PATH=/bin
export PATH
/bin/busybox mkdir -p /bin /proc /sys /dev /host /rw /newroot
/bin/busybox --install -s /bin

fail() {
  echo "labctl-vm init: $*" >&2
  poweroff -f
  sleep 60
}

mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev"

# Parameters from the kernel command line (labctl.NAME=VALUE; the harness puts them there,
# paths it made, without spaces).
param() {
  for word in $(cat /proc/cmdline); do
    case "$word" in "labctl.$1="*) echo "${word#*=}" ;; esac
  done
}
guest=$(param guest)
[ -n "$guest" ] || fail "no labctl.guest= on the kernel command line"

# virtio_pci for the devices, 9pnet_virtio + 9p for the host's root, overlay for the
# writable layer, virtio_console for the harness's control channel (a virtio serial port).
# busybox modprobe reads modules.dep (written by busybox depmod at harness time) and loads
# each module's dependencies first.
modprobe -a virtio_pci 9pnet_virtio 9p overlay virtio_console || fail "modprobe of the boot modules failed"

# cache=loose: the guest caches what it read from the host (several times faster for node
# and its libraries under software emulation). The host must not change files the guest
# uses while the VM runs (an overlay's lower layer must not change under it anyway).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=524288 hostroot /host || fail "cannot mount the host's root (9p)"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work,index=off,metacopy=off,redirect_dir=off,xino=off overlay /newroot ||
  fail "cannot mount the overlay root"
[ -f "/newroot$guest" ] || fail "$guest (labctl.guest=) is not in the host's root"

read -r uptime _ </proc/uptime
echo "labctl-vm init: the host's root is mounted (uptime $uptime s)"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash "$guest"
