#!/bin/bash
# Second stage of the stock-kernel VM: PID 1 of the guest, in the root that init.sh made
# (the host's root, read-only, under a tmpfs overlay). This is the host's own bash, and
# every command the tests run here is the host's own binary (node, ip, tc, nft, ...): only
# the kernel is Debian's stock one.
#
# It prepares the guest like a booted host (fresh /run and /tmp, the kernel's modules,
# the network modules loaded), says "ready KERNEL-RELEASE UPTIME" on the control port (the
# kernel's uptime tells its part of the boot, and this script's, from qemu's), then runs
# the commands the harness (test/support/stock-kernel-vm.ts) sends there, one at a time,
# and powers the VM off on "quit" or when the port closes.
#
# The control port is a virtio serial port named labctl.ctl, wired to qemu's stdin and
# stdout. A request is NUL-terminated fields:
#   run, TIMEOUT (seconds), CWD, N, N x NAME=VALUE, M, M x ARG, STDIN-LENGTH
# followed by STDIN-LENGTH bytes of standard input. The answer is one line
#   done EXIT-CODE STDOUT-LENGTH STDERR-LENGTH
# followed by the command's stdout and stderr, byte for byte. The command's argv goes from
# the harness's array to exec unchanged: bash reads each field into an array element, and
# nothing parses one as shell code.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

param() {
  local word
  for word in $(</proc/cmdline); do
    case "$word" in "labctl.$1="*) echo "${word#*=}" ;; esac
  done
}
busybox=$(param busybox)
modules=$(param modules)
release=$(uname -r)

power_off() {
  # busybox's poweroff -f is the reboot(2) call itself; sysrq is the fallback.
  "$busybox" poweroff -f
  echo o >/proc/sysrq-trigger
  sleep 60
}
fail() {
  echo "labctl-vm guest: $*" >&2
  power_off
}

# A booted host's mounts. /run and /tmp must be fresh: the host's own (seen through the
# overlay) hold its network namespaces, lab state and locks. A checkout under the host's
# /tmp (a CI clone there) stays where it is: bound back into the fresh /tmp.
checkout=$(param checkout)
case "$checkout" in
  /tmp/?*) mkdir -p /.labctl-host-tmp && mount --bind /tmp /.labctl-host-tmp || fail "cannot keep the host's /tmp" ;;
  *) checkout= ;;
esac
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || fail "cannot mount /run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
if [ -n "$checkout" ]; then
  mkdir -p "$checkout" && mount --bind "/.labctl-host-tmp/${checkout#/tmp/}" "$checkout" || fail "cannot bind $checkout"
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# What udev or systemd would make; devtmpfs has none of these.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
echo labctl-vm >/proc/sys/kernel/hostname

# The kernel's modules where modprobe and labctl doctor look for them, and busybox's
# modprobe as the kernel's module loader (the host may have no kmod; busybox reads the
# modules.dep and modules.alias that busybox depmod wrote), so that the kernel loads what
# a command needs on demand, as on a stock host.
mkdir -p "/lib/modules/$release" && mount --bind "$modules" "/lib/modules/$release" || fail "cannot mount $modules"
mkdir -p /run/labctl-vm/bin
ln -s "$busybox" /run/labctl-vm/bin/modprobe
echo /run/labctl-vm/bin/modprobe >/proc/sys/kernel/modprobe
# What labctl and its tests use, loaded ahead (on demand works too, but this way a missing
# module shows on the console at boot rather than as a command's odd failure).
modules_ahead=(veth bridge tun sch_netem sch_tbf sch_htb nf_tables nf_conntrack nf_nat nft_chain_nat nft_nat nft_ct nft_masq
  nft_reject_inet nf_conntrack_netlink wireguard)
/run/labctl-vm/bin/modprobe -a "${modules_ahead[@]}" || echo "labctl-vm guest: modprobe -a ${modules_ahead[*]} failed" >&2
ip link set lo up

port=
for dir in /sys/class/virtio-ports/*; do
  [ "$(<"$dir/name")" = labctl.ctl ] && port=/dev/${dir##*/}
done
[ -n "$port" ] || fail "no virtio port named labctl.ctl"
exec 3<>"$port" || fail "cannot open $port"
read -r uptime _ </proc/uptime
printf 'ready %s %s\n' "$release" "$uptime" >&3

# Each program run here costs ~50 ms when static and ~150 ms when dynamically linked (read
# over 9p, linked under emulation; measured here on a busy host), so the loop runs as few as
# it can, and the static busybox where it will do: env -i to give the command exactly the
# environment asked for, stat and cat. GNU timeout, because it signals the command's whole
# process group (busybox's signals the command alone), and exits 124 when it did.
work=/run/labctl-vm/command
mkdir -p "$work"
timeout_program=$(type -P timeout) || fail "no timeout program (coreutils) in the host's root"
field() { IFS= read -r -d '' -u 3 "$1"; }
while field op; do
  [ "$op" = run ] || break
  field timeout && field cwd && field count || break
  envs=()
  for ((i = 0; i < count; i++)); do field value || break 2; envs+=("$value"); done
  field count || break
  args=()
  for ((i = 0; i < count; i++)); do field value || break 2; args+=("$value"); done
  field input_length || break
  if [ "$input_length" -gt 0 ]; then
    # head -c reads exactly that many bytes (never past them into the next request).
    head -c "$input_length" <&3 >"$work/stdin"
  else
    : >"$work/stdin"
  fi
  # timeout -k: TERM for the command's process group after TIMEOUT seconds, KILL 5 s later.
  (cd -- "$cwd" && exec "$busybox" env -i "${envs[@]}" "$timeout_program" -k 5 "$timeout" "${args[@]}") \
    <"$work/stdin" >"$work/stdout" 2>"$work/stderr" 3>&-
  code=$?
  sizes=$("$busybox" stat -c %s "$work/stdout" "$work/stderr")
  printf 'done %d %d %d\n' "$code" ${sizes} >&3
  "$busybox" cat "$work/stdout" "$work/stderr" >&3
done
exec 3>&-
power_off
