#!/usr/bin/env bash
# Usage: test/guest/smoke.sh [DOMAIN_XML]   (default: test/guest/example-domain.xml)
#
# End-to-end check of the tiny test guest on qemu:///system: creates the qcow2
# overlay t1.qcow2 of tiny-base.qcow2 in pool "premiscale", defines and starts
# the domain, waits (up to SMOKE_TIMEOUT seconds, default 120) for
# "PREMISCALE-GUEST-READY disk=yes" in its serial log, then destroys and
# undefines it and deletes the overlay. Prints timings to stderr.
# Expects test/scripts/deps.sh, test/scripts/libvirtd.sh start and
# test/guest/build.sh to have run. Leftovers of an earlier run are removed first.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
XML="${1:-$HERE/example-domain.xml}"
URI=qemu:///system
POOL=premiscale
VOL=t1.qcow2
TIMEOUT="${SMOKE_TIMEOUT:-120}"

log() { printf 'smoke.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
v() { virsh -q -c "$URI" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

[[ -f "$XML" ]] || die "no domain XML at $XML"
NAME="$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$XML" | head -n1)"
LOG="$(sed -n "s:.*<log file='\([^']*\)'.*:\1:p" "$XML" | head -n1)"
[[ -n "$NAME" && -n "$LOG" ]] || die "cannot read <name> or the serial <log file=...> from $XML"

cleanup() {
  if v dominfo "$NAME" >/dev/null 2>&1; then
    v destroy "$NAME" >/dev/null 2>&1 || true
    v undefine "$NAME" >/dev/null 2>&1 || true
  fi
  if v vol-info --pool "$POOL" "$VOL" >/dev/null 2>&1; then
    v vol-delete --pool "$POOL" "$VOL" >/dev/null || true
  fi
}
cleanup

t=$(now)
v vol-create-as "$POOL" "$VOL" 64M --format qcow2 \
  --backing-vol tiny-base.qcow2 --backing-vol-format qcow2 >/dev/null
log "overlay $VOL created in $(since "$t") s"
trap cleanup EXIT

v define "$XML" >/dev/null
t0=$(now)
v start "$NAME" >/dev/null
log "virsh start returned after $(since "$t0") s"

deadline=$((SECONDS + TIMEOUT))
until grep -q 'PREMISCALE-GUEST-READY' "$LOG" 2>/dev/null; do
  ((SECONDS < deadline)) || die "no PREMISCALE-GUEST-READY in $LOG after ${TIMEOUT}s"
  sleep 0.2
done
log "guest ready line after $(since "$t0") s"
sleep 0.5
grep 'PREMISCALE-GUEST-' "$LOG" >&2
grep -q 'PREMISCALE-GUEST-READY disk=yes' "$LOG" || die "guest did not see its disk"

t=$(now)
v destroy "$NAME" >/dev/null
log "virsh destroy took $(since "$t") s"
v undefine "$NAME" >/dev/null
v vol-delete --pool "$POOL" "$VOL" >/dev/null
trap - EXIT
log "ok"
