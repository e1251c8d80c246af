#!/usr/bin/env bash
# Usage: test/scripts/deps.sh
#
# Installs the Debian packages the integration tests need (libvirt daemon,
# QEMU/TCG, qemu-img, virsh, busybox-static, cpio, prometheus, genisoimage,
# systemd for systemd-analyze and systemd-sysusers: nothing runs under it,
# chromium for the Temporal UI test, driven headless, and postgresql: its
# server binaries run a throwaway cluster for the embedded server's
# PostgreSQL persistence), and openssh-server: its sshd plays an SSH host
# of the production guide in a private namespace, never as a service.
# A fast no-op when every package is already installed; otherwise runs
# `apt-get update` once and installs only the missing packages. Needs root.
set -euo pipefail

PACKAGES=(
  libvirt-daemon-system
  libvirt-daemon-system-sysv
  libvirt-daemon-driver-qemu
  qemu-system-x86
  qemu-utils
  libvirt-clients
  busybox-static
  cpio
  prometheus
  genisoimage
  systemd
  chromium
  postgresql
  openssh-server
)

log() { printf 'deps.sh: %s\n' "$*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  log "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root to install: ${missing[*]}"
  exit 1
fi

log "installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# No package may start its service here (openssh-server would leave sshd
# on port 22): tests start what they use and stop it. policy-rc.d is
# Debian's way to say so to invoke-rc.d; one that exists is left alone.
policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\n# test/scripts/deps.sh: no service starts while it installs\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
log "done"
