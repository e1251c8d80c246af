#!/usr/bin/env bash
# Usage: test/scripts/hosts.sh start [N] | stop | kill I | restart I | freeze I | thaw I | status | uris | dir I
#
# Several independent libvirtd "hosts" on one machine, for crash-safety tests.
# Host I (h1, h2, ...) has its own mount namespace in which private
# directories are bind-mounted over /var/run/libvirt, /var/lib/libvirt,
# /etc/libvirt, /var/log/libvirt and /var/cache/libvirt; its libvirtd listens
# on TCP 127.0.0.1:PORT (no auth) and is reached as
#   qemu+tcp://127.0.0.1:PORT/system  and  test+tcp://127.0.0.1:PORT/default
# Each host has a dir storage pool "premiscale" (active, autostarted) on its
# own directory, so hosts do not see each other's volumes.
#
#   start [N]  Create and start hosts 1..N (default 3) unless their libvirtd
#              already answers, wait until each answers (30 s), make sure its
#              pool exists. Hosts above N are left as they are.
#   stop       Stop the daemons this script started (libvirtd, then virtlogd)
#              on every host and forget the hosts. QEMU guests keep running:
#              tests must destroy and undefine their domains first.
#   kill I     SIGKILL host I's libvirtd only, as when a hypervisor's daemon
#              crashes: its QEMU guests and virtlogd keep running.
#   freeze I   SIGSTOP host I's libvirtd, as when a daemon hangs (stuck on a
#              dead NFS pool): its socket still accepts connections, nothing
#              answers. Guests keep running.
#   thaw I     SIGCONT host I's libvirtd.
#   restart I  Start host I's libvirtd again (and virtlogd if it is gone) in
#              the host's mount namespace, wait until it answers. Running
#              guests are re-attached. A libvirtd that runs is left alone.
#   status     Per host: port, whether libvirtd answers, daemon pids.
#                Exit status 0 if every host answers, 3 otherwise.
#   uris       One line "NAME PORT" per started host (e.g. "h1 16601").
#   dir I      Host I's private directory (its log/qemu/ holds guests' console logs).
#
# Environment:
#   PSTEST_HOSTS_DIR        host directories (default /var/lib/premiscale-hosts;
#                               host I lives in $PSTEST_HOSTS_DIR/hI)
#   PSTEST_HOSTS_BASE_PORT  port of h1 (default 16601; hI gets BASE+I-1)
# State (pidfiles, ports, which daemons we started): /run/premiscale-hosts/hI.
# Host directories stay after stop (a later start re-attaches guests left
# running). A new host copies an existing QEMU capability cache, so starting
# takes ~2 s instead of ~8 s of QEMU probing per host.
# Hosts share the machine's cgroups: libvirt names a guest's cgroup
# machine/qemu-ID-NAME.libvirt-qemu, so give guests distinct names across hosts.
# Needs root. Idempotent: start twice or stop twice is harmless.
set -euo pipefail

STATE_DIR=/run/premiscale-hosts
HOSTS_DIR="${PSTEST_HOSTS_DIR:-/var/lib/premiscale-hosts}"
BASE_PORT="${PSTEST_HOSTS_BASE_PORT:-16601}"
POOL_NAME=premiscale
START_TIMEOUT=30
STOP_TIMEOUT=20
KILL_TIMEOUT=10
MAX_HOSTS=64
# Private directory of a host -> where it is bind-mounted in its namespace.
MOUNTS=(
  run:/var/run/libvirt
  lib:/var/lib/libvirt
  etc:/etc/libvirt
  log:/var/log/libvirt
  cache:/var/cache/libvirt
)

log() { printf 'hosts.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# fix_kvm_access: copied from libvirtd.sh. Some machines of this kind have a
# /dev/kvm that only root may open (crw------- root:root, no udev to apply
# Debian's rule). QEMU's capability probe (run with root's access) then
# reports KVM, but libvirt's cache check (done for the qemu user,
# libvirt-qemu) finds /dev/kvm unusable and throws the capability cache away
# on every lookup: each define/start/version re-probes QEMU (define took
# ~44 s instead of 20 ms). Give /dev/kvm the usual root:kvm 0660 so
# libvirt-qemu (member of kvm) may open it.
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

need_root() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root"
}

host_state() { printf '%s/h%s\n' "$STATE_DIR" "$1"; }

# host_dir I: the host's private directory, as recorded when it was started
# (so a later command with another PSTEST_HOSTS_DIR still finds it).
host_dir() {
  local f
  f="$(host_state "$1")/dir"
  if [[ -s "$f" ]]; then
    cat "$f"
  else
    printf '%s/h%s\n' "$HOSTS_DIR" "$1"
  fi
}

# host_port I: the recorded port of a started host, or BASE+I-1.
host_port() {
  local f
  f="$(host_state "$1")/port"
  if [[ -s "$f" ]]; then
    cat "$f"
  else
    printf '%s\n' "$((BASE_PORT + $1 - 1))"
  fi
}

qemu_uri() { printf 'qemu+tcp://127.0.0.1:%s/system\n' "$(host_port "$1")"; }
test_uri() { printf 'test+tcp://127.0.0.1:%s/default\n' "$(host_port "$1")"; }

# started_hosts: numbers of the hosts this script started, ascending.
started_hosts() {
  local d
  [[ -d "$STATE_DIR" ]] || return 0
  for d in "$STATE_DIR"/h*; do
    [[ -s "$d/port" ]] || continue
    printf '%s\n' "${d##*/h}"
  done | grep -E '^[0-9]+$' | sort -n || true
}

# alive PID: true if PID exists and is not a zombie (daemons are reparented
# to PID 1, which may not reap them quickly).
alive() {
  local st
  st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# daemon_pid I NAME: print the pid of host I's NAME (virtlogd|libvirtd) if
# its pidfile names a live process with that name.
daemon_pid() {
  local file pid
  file="$(host_state "$1")/$2.pid"
  [[ -s "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == "$2" ]] || return 1
  printf '%s\n' "$pid"
}

# owned I NAME: true if this script recorded that it started host I's NAME.
owned() {
  local f
  f="$(host_state "$1")/started-by-us"
  [[ -f "$f" ]] && grep -qx "$2" "$f"
}

record_owned() {
  owned "$1" "$2" || printf '%s\n' "$2" >>"$(host_state "$1")/started-by-us"
}

forget_owned() {
  local f rest
  f="$(host_state "$1")/started-by-us"
  [[ -f "$f" ]] || return 0
  rest="$(grep -vx "$2" "$f" || true)"
  if [[ -n "$rest" ]]; then
    printf '%s\n' "$rest" >"$f"
  else
    rm -f "$f"
  fi
}

# answers I: true if host I's libvirtd answers on its QEMU driver. The first
# call after a first start probes QEMU's capabilities (~4 s).
answers() {
  timeout 15 virsh -q -c "$(qemu_uri "$1")" version >/dev/null 2>&1
}

test_driver_answers() {
  timeout 15 virsh -q -c "$(test_uri "$1")" list >/dev/null 2>&1
}

# copy_tree SRC DST: copy the directories of SRC (not its files) with their
# owners and modes, e.g. /var/lib/libvirt/qemu (libvirt-qemu, 0750).
copy_tree() {
  [[ -d "$1" ]] || return 0
  (cd "$1" && find . -type d -print0 | tar --null --no-recursion -T - -cf -) |
    tar -xpf - -C "$2"
}

# set_conf FILE KEY VALUE: replace any uncommented KEY line with KEY = VALUE.
set_conf() {
  local file="$1" key="$2" value="$3"
  sed -i "/^[[:space:]]*${key}[[:space:]]*=/d" "$file"
  printf '%s = %s\n' "$key" "$value" >>"$file"
}

caps_dir() { printf '%s/cache/qemu/capabilities\n' "$(host_dir "$1")"; }

has_xml() { compgen -G "$1/*.xml" >/dev/null; }

# seed_caps I: give a host without a QEMU capability cache a copy of the
# machine's or another host's. Probing QEMU takes ~8 s of CPU per daemon (3
# hosts probing at once took 25 s on 2 cores); libvirt checks a cached entry
# (QEMU and libvirtd ctimes, kernel, microcode, KVM access) and probes again
# if it does not fit this machine.
seed_caps() {
  local dst src
  dst="$(caps_dir "$1")"
  has_xml "$dst" && return 0
  for src in /var/cache/libvirt/qemu/capabilities \
    "$HOSTS_DIR"/h*/cache/qemu/capabilities; do
    if [[ "$src" == "$dst" ]] || ! has_xml "$src"; then
      continue
    fi
    mkdir -p "$dst"
    cp -p "$src"/*.xml "$dst"/
    return 0
  done
}

# prepare_host I: create host I's private directories (once) and write its
# libvirtd.conf (every time).
prepare_host() {
  local i="$1" d port sub
  d="$(host_dir "$i")"
  port="$(host_port "$i")"
  mkdir -p "$d/pool"
  for sub in run lib log cache; do
    if [[ ! -d "$d/$sub" ]]; then
      mkdir -p "$d/$sub"
      case "$sub" in
        lib) copy_tree /var/lib/libvirt "$d/lib" ;;
        log) copy_tree /var/log/libvirt "$d/log" ;;
        cache) copy_tree /var/cache/libvirt "$d/cache" ;;
      esac
    fi
  done
  seed_caps "$i"
  if [[ ! -f "$d/etc/libvirtd.conf" ]]; then
    log "h$i: creating $d (copy of /etc/libvirt)"
    mkdir -p "$d/etc"
    cp -a /etc/libvirt/. "$d/etc/"
    # Start empty: no domains, pools, networks or secrets of the machine's
    # own libvirtd (its pool "premiscale", the NAT network "default").
    rm -f "$d"/etc/qemu/*.xml "$d"/etc/qemu/autostart/* \
      "$d"/etc/qemu/networks/*.xml "$d"/etc/qemu/networks/autostart/* \
      "$d"/etc/storage/*.xml "$d"/etc/storage/autostart/* \
      "$d"/etc/secrets/* 2>/dev/null || true
  fi
  local conf="$d/etc/libvirtd.conf"
  set_conf "$conf" listen_tls 0
  set_conf "$conf" listen_tcp 1
  set_conf "$conf" tcp_port "\"$port\""
  set_conf "$conf" listen_addr '"127.0.0.1"'
  set_conf "$conf" auth_tcp '"none"'
  # QEMU runs as libvirt-qemu and must traverse to the pool.
  local dir="$d/pool"
  while [[ "$dir" != "/" && -n "$dir" ]]; do
    dir="$(dirname "$dir")"
    [[ "$dir" == "/" ]] && break
    chmod o+x "$dir"
  done
}

# in_host_ns I CMD...: run CMD in host I's mount namespace: the one its
# virtlogd (or else its libvirtd) runs in, or a new one with the host's bind
# mounts when neither runs.
in_host_ns() {
  local i="$1" name pid ns d
  shift
  for name in virtlogd libvirtd; do
    if pid="$(daemon_pid "$i" "$name")"; then
      ns="$(readlink "/proc/$pid/ns/mnt")"
      if [[ "$ns" == "$(readlink /proc/self/ns/mnt)" ]]; then
        die "h$i: $name (pid $pid) runs in this script's mount namespace, not a private one"
      fi
      nsenter --mount="/proc/$pid/ns/mnt" -- "$@"
      return
    fi
  done
  d="$(host_dir "$i")"
  local binds=() m
  for m in "${MOUNTS[@]}"; do
    binds+=("$d/${m%%:*}" "${m#*:}")
  done
  # shellcheck disable=SC2016 # expanded by the inner bash
  unshare --mount --propagation private -- /bin/bash -euc '
    while [[ "$1" != -- ]]; do
      mount --bind "$1" "$2"
      shift 2
    done
    shift
    exec "$@"' bash "${binds[@]}" -- "$@"
}

# wait_pidfile I NAME: wait (5 s) until NAME's pidfile names a live process.
wait_pidfile() {
  local deadline=$((SECONDS + 5))
  until daemon_pid "$1" "$2" >/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# launch I: start host I's virtlogd and libvirtd if they are not running.
launch() {
  local i="$1" sd
  sd="$(host_state "$i")"
  if ! daemon_pid "$i" virtlogd >/dev/null; then
    rm -f "$sd/virtlogd.pid"
    in_host_ns "$i" /usr/sbin/virtlogd -d -p "$sd/virtlogd.pid" ||
      die "h$i: virtlogd failed to start (see $(host_dir "$i")/log/virtlogd.log)"
    record_owned "$i" virtlogd
    wait_pidfile "$i" virtlogd || die "h$i: virtlogd did not start (see $(host_dir "$i")/log/)"
  fi
  if daemon_pid "$i" libvirtd >/dev/null; then
    log "h$i: libvirtd (pid $(daemon_pid "$i" libvirtd)) runs but does not answer yet; waiting"
    return 0
  fi
  rm -f "$sd/libvirtd.pid"
  if ! in_host_ns "$i" /usr/sbin/libvirtd -d --listen -p "$sd/libvirtd.pid"; then
    tail -n 3 "$(host_dir "$i")/log/libvirtd.log" 2>/dev/null | sed 's/^/  /' >&2 || true
    die "h$i: libvirtd failed to start (is port $(host_port "$i") taken? see $(host_dir "$i")/log/libvirtd.log)"
  fi
  record_owned "$i" libvirtd
}

# wait_answers I DEADLINE: wait until host I answers on both drivers.
wait_answers() {
  local i="$1" deadline="$2" d
  d="$(host_dir "$i")"
  until answers "$i"; do
    if ! daemon_pid "$i" libvirtd >/dev/null && ! wait_pidfile "$i" libvirtd; then
      tail -n 5 "$d/log/libvirtd.log" 2>/dev/null | sed 's/^/  /' >&2 || true
      die "h$i: libvirtd exited (see $d/log/libvirtd.log)"
    fi
    ((SECONDS < deadline)) ||
      die "h$i: libvirtd did not answer on $(qemu_uri "$i") within ${START_TIMEOUT}s (see $d/log/)"
    sleep 0.2
  done
  until test_driver_answers "$i"; do
    ((SECONDS < deadline)) || die "h$i: the test driver does not answer on $(test_uri "$i")"
    sleep 0.2
  done
}

pool_field() {
  virsh -q -c "$1" pool-info "$POOL_NAME" | awk -F': *' -v k="$2" '$1==k{print $2}'
}

# ensure_pool I: dir pool "premiscale" on host I's own pool directory,
# active and autostarted.
ensure_pool() {
  local i="$1" uri target want
  uri="$(qemu_uri "$i")"
  want="$(host_dir "$i")/pool"
  if ! virsh -q -c "$uri" pool-info "$POOL_NAME" >/dev/null 2>&1; then
    virsh -q -c "$uri" pool-define-as "$POOL_NAME" dir --target "$want" >/dev/null
  fi
  target="$(virsh -q -c "$uri" pool-dumpxml "$POOL_NAME" |
    sed -n 's:.*<path>\(.*\)</path>.*:\1:p' | head -n1)"
  [[ "$target" == "$want" ]] ||
    die "h$i: pool '$POOL_NAME' on $uri has target '$target', not $want (is port $(host_port "$i") someone else's?)"
  [[ -d "$target" ]] || virsh -q -c "$uri" pool-build "$POOL_NAME" >/dev/null
  if [[ "$(pool_field "$uri" State)" != "running" ]]; then
    virsh -q -c "$uri" pool-start "$POOL_NAME" >/dev/null
  fi
  if [[ "$(pool_field "$uri" Autostart)" != "yes" ]]; then
    virsh -q -c "$uri" pool-autostart "$POOL_NAME" >/dev/null
  fi
}

check_tools() {
  local bin
  for bin in /usr/sbin/virtlogd /usr/sbin/libvirtd virsh unshare nsenter; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin not found; run test/scripts/deps.sh first"
  done
}

do_start() {
  local n="$1" i sd port started=()
  need_root
  check_tools
  if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1 || n > MAX_HOSTS)); then
    die "N must be 1..$MAX_HOSTS, not '$n'"
  fi
  [[ "$BASE_PORT" =~ ^[0-9]+$ ]] || die "PSTEST_HOSTS_BASE_PORT must be a number"
  mkdir -p "$STATE_DIR"
  fix_kvm_access
  local t0=$SECONDS
  for ((i = 1; i <= n; i++)); do
    sd="$(host_state "$i")"
    if [[ -s "$sd/port" ]] && answers "$i"; then
      log "h$i: libvirtd already answers on port $(host_port "$i")"
      continue
    fi
    mkdir -p "$sd"
    if [[ ! -s "$sd/port" ]]; then
      port=$((BASE_PORT + i - 1))
      printf '%s\n' "$port" >"$sd/port"
      printf '%s/h%s\n' "$HOSTS_DIR" "$i" >"$sd/dir"
    fi
    prepare_host "$i"
    log "h$i: starting on port $(host_port "$i")"
    launch "$i"
    if has_xml "$(caps_dir "$i")"; then
      started+=("$i")
    else
      # Nothing to seed from: let this host probe QEMU alone, then the
      # next hosts copy its cache.
      wait_answers "$i" $((SECONDS + START_TIMEOUT))
      log "h$i: answers on $(qemu_uri "$i") and $(test_uri "$i")"
    fi
  done
  # The daemons start in parallel; wait for each in turn.
  local deadline=$((SECONDS + START_TIMEOUT))
  for i in "${started[@]}"; do
    wait_answers "$i" "$deadline"
    log "h$i: answers on $(qemu_uri "$i") and $(test_uri "$i")"
  done
  for ((i = 1; i <= n; i++)); do
    ensure_pool "$i"
  done
  log "hosts 1..$n ready ($((SECONDS - t0)) s)"
}

do_kill() {
  local i="$1" pid
  need_root
  [[ -s "$(host_state "$i")/port" ]] || die "h$i was not started by this script"
  if ! pid="$(daemon_pid "$i" libvirtd)"; then
    log "h$i: libvirtd is not running"
    return 0
  fi
  owned "$i" libvirtd || die "h$i: libvirtd (pid $pid) was not started by this script"
  log "h$i: SIGKILL libvirtd (pid $pid)"
  kill -KILL "$pid"
  local deadline=$((SECONDS + KILL_TIMEOUT))
  while alive "$pid"; do
    ((SECONDS < deadline)) || die "h$i: libvirtd (pid $pid) still alive after SIGKILL"
    sleep 0.05
  done
}

# do_signal I SIG: send SIG to host I's libvirtd (started by this script).
do_signal() {
  local i="$1" sig="$2" pid
  need_root
  [[ -s "$(host_state "$i")/port" ]] || die "h$i was not started by this script"
  pid="$(daemon_pid "$i" libvirtd)" || die "h$i: libvirtd is not running"
  owned "$i" libvirtd || die "h$i: libvirtd (pid $pid) was not started by this script"
  log "h$i: SIG$sig libvirtd (pid $pid)"
  kill "-$sig" "$pid"
}

do_restart() {
  local i="$1" t0=$SECONDS
  need_root
  check_tools
  [[ -s "$(host_state "$i")/port" ]] || die "h$i was not started by this script; use start"
  if answers "$i"; then
    log "h$i: libvirtd already answers on port $(host_port "$i")"
  else
    if ! daemon_pid "$i" virtlogd >/dev/null && ! daemon_pid "$i" libvirtd >/dev/null; then
      log "h$i: virtlogd is gone too; creating the mount namespace again"
    fi
    prepare_host "$i"
    launch "$i"
    wait_answers "$i" $((SECONDS + START_TIMEOUT))
    log "h$i: answers on $(qemu_uri "$i") ($((SECONDS - t0)) s)"
  fi
  ensure_pool "$i"
}

# stop_owned I NAME
stop_owned() {
  local i="$1" name="$2" pid
  owned "$i" "$name" || return 0
  if ! pid="$(daemon_pid "$i" "$name")"; then
    forget_owned "$i" "$name"
    return 0
  fi
  log "h$i: stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "h$i: $name (pid $pid) did not exit after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  forget_owned "$i" "$name"
}

do_stop() {
  local i hosts guests pid
  hosts="$(started_hosts)"
  if [[ -z "$hosts" ]]; then
    log "nothing to stop: this script started no host"
    return 0
  fi
  need_root
  for i in $hosts; do
    if answers "$i"; then
      guests="$(timeout 15 virsh -q -c "$(qemu_uri "$i")" list --name 2>/dev/null | xargs || true)"
      [[ -z "$guests" ]] || log "h$i: warning: guests keep running: $guests"
    fi
    # A frozen libvirtd (freeze I) would not see SIGTERM until thawed.
    if pid="$(daemon_pid "$i" libvirtd)"; then kill -CONT "$pid" 2>/dev/null || true; fi
    # libvirtd first: it talks to virtlogd while shutting down.
    stop_owned "$i" libvirtd
    stop_owned "$i" virtlogd
    rm -rf "$(host_state "$i")"
  done
  rmdir "$STATE_DIR" 2>/dev/null || true
  log "stopped"
}

do_status() {
  local i hosts rc=0 lv vl state
  hosts="$(started_hosts)"
  if [[ -z "$hosts" ]]; then
    printf 'no hosts started\n'
    return 3
  fi
  for i in $hosts; do
    lv="$(daemon_pid "$i" libvirtd || echo -)"
    vl="$(daemon_pid "$i" virtlogd || echo -)"
    if answers "$i"; then
      state="answers, pool $POOL_NAME $(pool_field "$(qemu_uri "$i")" State 2>/dev/null || echo '?')"
    else
      state="not answering"
      rc=3
    fi
    printf 'h%s port %s: %s (libvirtd pid %s, virtlogd pid %s, dir %s)\n' \
      "$i" "$(host_port "$i")" "$state" "$lv" "$vl" "$(host_dir "$i")"
  done
  return "$rc"
}

do_uris() {
  local i
  for i in $(started_hosts); do
    printf 'h%s %s\n' "$i" "$(host_port "$i")"
  done
}

# check_host_arg ARG: die unless ARG is a host number.
check_host_arg() {
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "host must be a number (1, 2, ...), not '$1'"
}

[[ $# -ge 1 ]] || usage
case "$1" in
  start)
    [[ $# -le 2 ]] || usage
    do_start "${2:-3}"
    ;;
  stop)
    [[ $# -eq 1 ]] || usage
    do_stop
    ;;
  kill)
    [[ $# -eq 2 ]] || usage
    check_host_arg "$2"
    do_kill "$2"
    ;;
  freeze|thaw)
    [[ $# -eq 2 ]] || usage
    check_host_arg "$2"
    if [[ "$1" == freeze ]]; then do_signal "$2" STOP; else do_signal "$2" CONT; fi
    ;;
  restart)
    [[ $# -eq 2 ]] || usage
    check_host_arg "$2"
    do_restart "$2"
    ;;
  status)
    [[ $# -eq 1 ]] || usage
    do_status
    ;;
  uris)
    [[ $# -eq 1 ]] || usage
    do_uris
    ;;
  dir)
    [[ $# -eq 2 ]] || usage
    check_host_arg "$2"
    host_dir "$2"
    ;;
  *) usage ;;
esac
