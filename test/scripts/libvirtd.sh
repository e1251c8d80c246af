#!/usr/bin/env bash
# Usage: test/scripts/libvirtd.sh start|stop|status
#
#   start   Start virtlogd and libvirtd (no systemd here) unless a libvirtd
#           already answers on qemu:///system, wait until it does (30 s), then
#           make sure the dir storage pool "premiscale" exists, is active and
#           autostarted (target /var/lib/premiscale/pool unless the pool was
#           already defined elsewhere).
#   stop    Stop only the daemons this script started (recorded in
#           /run/premiscale-test/started-by-us) and wait for them to exit.
#           QEMU guests keep running; destroy them first if that matters.
#   status  Print whether libvirtd answers and which daemons this script owns.
#             Exit status 0 if libvirtd answers, 3 otherwise.
#
# Environment: PSTEST_POOL_DIR overrides the pool target directory.
# Needs root. Idempotent: start twice or stop twice is harmless.
set -euo pipefail

STATE_DIR=/run/premiscale-test
STARTED_FILE="$STATE_DIR/started-by-us"
VIRTLOGD_PID="$STATE_DIR/virtlogd.pid"
LIBVIRTD_PID="$STATE_DIR/libvirtd.pid"
LIBVIRT_SOCK=/var/run/libvirt/libvirt-sock
VIRTLOGD_SOCK=/var/run/libvirt/virtlogd-sock
URI=qemu:///system
POOL_NAME=premiscale
POOL_DIR="${PSTEST_POOL_DIR:-/var/lib/premiscale/pool}"
START_TIMEOUT=30
STOP_TIMEOUT=20

log() { printf 'libvirtd.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# libvirtd_answers: true if the daemon's QEMU driver answers. The first call
# after a start probes QEMU's capabilities (~4 s), hence the long timeout.
libvirtd_answers() {
  [[ -S "$LIBVIRT_SOCK" ]] || return 1
  timeout 15 virsh -q -c "$URI" version >/dev/null 2>&1
}

# fix_kvm_access: some machines of this kind have a /dev/kvm that only root
# may open (crw------- root:root, no udev to apply Debian's rule). QEMU's
# capability probe (run with root's access) then reports KVM, but libvirt's
# cache check (done for the qemu user, libvirt-qemu) finds /dev/kvm unusable
# and throws the capability cache away on every lookup: each define/start/
# version re-probes QEMU (define took ~44 s instead of 20 ms). Give /dev/kvm
# the usual root:kvm 0660 so libvirt-qemu (member of kvm) may open it.
# Guests still use TCG (type='qemu'); nested KVM here fails to start guests.
fix_kvm_access() {
  [[ -c /dev/kvm ]] || return 0
  getent group kvm >/dev/null 2>&1 || return 0
  local qemu_user=libvirt-qemu
  id "$qemu_user" >/dev/null 2>&1 || return 0
  if runuser -u "$qemu_user" -- test -r /dev/kvm -a -w /dev/kvm 2>/dev/null; then
    return 0
  fi
  log "making /dev/kvm root:kvm 0660 so libvirt's QEMU capability cache stays valid"
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
}

# pid_from FILE: print the pid stored in FILE if that process is alive.
pid_from() {
  local file="$1" pid
  [[ -s "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

# owned NAME: true if this script recorded that it started NAME.
owned() {
  [[ -f "$STARTED_FILE" ]] && grep -qx "$1" "$STARTED_FILE"
}

record_owned() {
  owned "$1" || printf '%s\n' "$1" >>"$STARTED_FILE"
}

forget_owned() {
  [[ -f "$STARTED_FILE" ]] || return 0
  local rest
  rest="$(grep -vx "$1" "$STARTED_FILE" || true)"
  if [[ -n "$rest" ]]; then
    printf '%s\n' "$rest" >"$STARTED_FILE"
  else
    rm -f "$STARTED_FILE"
  fi
}

virtlogd_running() {
  pid_from "$VIRTLOGD_PID" >/dev/null && return 0
  # A virtlogd started by someone else (e.g. an init script) also counts.
  [[ -S "$VIRTLOGD_SOCK" ]] && pgrep -x virtlogd >/dev/null 2>&1
}

ensure_pool() {
  local state autostart target
  if ! virsh -q -c "$URI" pool-info "$POOL_NAME" >/dev/null 2>&1; then
    log "defining dir storage pool '$POOL_NAME' at $POOL_DIR"
    virsh -q -c "$URI" pool-define-as "$POOL_NAME" dir --target "$POOL_DIR" >/dev/null
  fi
  target="$(virsh -q -c "$URI" pool-dumpxml "$POOL_NAME" |
    sed -n 's:.*<path>\(.*\)</path>.*:\1:p' | head -n1)"
  [[ -n "$target" ]] || die "cannot read the target path of pool '$POOL_NAME'"
  if [[ ! -d "$target" ]]; then
    log "building pool directory $target"
    virsh -q -c "$URI" pool-build "$POOL_NAME" >/dev/null
  fi
  # QEMU runs as libvirt-qemu (DAC driver, dynamic ownership): it must be
  # able to traverse every parent of the pool and of the guest kernel files.
  # Make the parents world-searchable (0755 is the default for mkdir anyway).
  local dir="$target"
  while [[ "$dir" != "/" && -n "$dir" ]]; do
    dir="$(dirname "$dir")"
    [[ "$dir" == "/" ]] && break
    chmod o+x "$dir"
  done
  state="$(virsh -q -c "$URI" pool-info "$POOL_NAME" | awk -F': *' '$1=="State"{print $2}')"
  if [[ "$state" != "running" ]]; then
    log "starting pool '$POOL_NAME'"
    virsh -q -c "$URI" pool-start "$POOL_NAME" >/dev/null
  fi
  autostart="$(virsh -q -c "$URI" pool-info "$POOL_NAME" | awk -F': *' '$1=="Autostart"{print $2}')"
  if [[ "$autostart" != "yes" ]]; then
    virsh -q -c "$URI" pool-autostart "$POOL_NAME" >/dev/null
  fi
  log "pool '$POOL_NAME' active at $target"
}

do_start() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root"
  for bin in /usr/sbin/virtlogd /usr/sbin/libvirtd virsh; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin not found; run test/scripts/deps.sh first"
  done
  mkdir -p "$STATE_DIR"
  fix_kvm_access

  if libvirtd_answers; then
    log "libvirtd already answers on $URI"
  else
    if virtlogd_running; then
      log "virtlogd already running"
    else
      log "starting virtlogd"
      rm -f "$VIRTLOGD_PID"
      /usr/sbin/virtlogd -d -p "$VIRTLOGD_PID"
      record_owned virtlogd
    fi
    if pid_from "$LIBVIRTD_PID" >/dev/null; then
      log "libvirtd (pid $(pid_from "$LIBVIRTD_PID")) runs but does not answer yet; waiting"
    else
      log "starting libvirtd"
      rm -f "$LIBVIRTD_PID"
      /usr/sbin/libvirtd -d -p "$LIBVIRTD_PID"
      record_owned libvirtd
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until libvirtd_answers; do
      if ((SECONDS >= deadline)); then
        die "libvirtd did not answer on $URI within ${START_TIMEOUT}s (see /var/log/libvirt/)"
      fi
      sleep 0.2
    done
    log "libvirtd answers on $URI"
  fi
  ensure_pool
}

# stop_owned NAME PIDFILE
stop_owned() {
  local name="$1" pidfile="$2" pid comm
  if ! owned "$name"; then
    return 0
  fi
  if ! pid="$(pid_from "$pidfile")"; then
    log "$name (started by us) is no longer running"
    forget_owned "$name"
    rm -f "$pidfile"
    return 0
  fi
  comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
  if [[ "$comm" != "$name" ]]; then
    log "pid $pid from $pidfile is '$comm', not $name; not killing it"
    forget_owned "$name"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) did not exit after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  forget_owned "$name"
  rm -f "$pidfile"
}

do_stop() {
  if [[ ! -f "$STARTED_FILE" ]]; then
    log "nothing to stop: this script started no daemon"
    return 0
  fi
  # libvirtd first: it talks to virtlogd while shutting down.
  stop_owned libvirtd "$LIBVIRTD_PID"
  stop_owned virtlogd "$VIRTLOGD_PID"
  log "stopped"
}

do_status() {
  local rc=0 pid
  if libvirtd_answers; then
    printf 'libvirtd: running (answers on %s)\n' "$URI"
    timeout 15 virsh -q -c "$URI" version 2>/dev/null | sed 's/^/  /' || true
    local pool_state
    pool_state="$(virsh -q -c "$URI" pool-info "$POOL_NAME" 2>/dev/null |
      awk -F': *' '$1=="State"{print $2}' || true)"
    printf '  pool %s: %s\n' "$POOL_NAME" "${pool_state:-not defined}"
  else
    printf 'libvirtd: not running\n'
    rc=3
  fi
  if virtlogd_running; then
    printf 'virtlogd: running\n'
  else
    printf 'virtlogd: not running\n'
  fi
  for name in libvirtd virtlogd; do
    if owned "$name"; then
      pid="$(pid_from "$STATE_DIR/$name.pid" || echo gone)"
      printf '%s: started by this script (pid %s)\n' "$name" "$pid"
    fi
  done
  return "$rc"
}

[[ $# -eq 1 ]] || usage
case "$1" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h | --help) usage ;;
  *) usage ;;
esac
