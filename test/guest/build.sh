#!/usr/bin/env bash
# Usage: test/guest/build.sh [OUTDIR]        (default OUTDIR: /var/lib/premiscale/guest)
#
# Builds a tiny real guest for QEMU/TCG direct kernel boot:
#   OUTDIR/vmlinuz     Debian's kernel (linux-image-<version>-amd64, fetched with
#                      `apt-get download`, cached in /var/cache/premiscale/,
#                      extracted with dpkg-deb -x into a temp dir; /boot is never touched)
#   OUTDIR/initrd.img  busybox-static initramfs (cpio newc, gzip) whose /init mounts
#                      proc/sys/devtmpfs, loads the virtio modules, prints
#                        PREMISCALE-GUEST-READY disk=<yes|no>
#                        PREMISCALE-GUEST-HOSTNAME <hostname|unknown>
#                      on the serial console, then PREMISCALE-GUEST-TICK <n> each
#                      second, or each `tick=SECONDS` of the kernel command line
#                      (so a guest restored or resumed shows it runs)
#   OUTDIR/cmdline     the kernel command line to use: console=ttyS0 quiet panic=-1
# and, if the libvirt storage pool "premiscale" exists, the empty 64 MiB base
# volume "tiny-base.qcow2" in that pool's target directory (for qcow2 overlays).
#
# The guest's hostname comes from, in this order: a kernel argument
# `hostname=NAME`; an SMBIOS system serial containing `h=NAME` or
# `hostname=NAME` (libvirt <sysinfo type='smbios'>, NoCloud style
# `ds=nocloud;h=NAME`); the kernel's own hostname if set; else "unknown".
#
# Idempotent: the kernel and initramfs are rebuilt only if missing or older
# than this script. Needs root (apt-get, mknod) and the packages from
# test/scripts/deps.sh (busybox-static, cpio, qemu-utils, libvirt-clients).
set -euo pipefail

OUTDIR="${1:-/var/lib/premiscale/guest}"
CACHE_DIR=/var/cache/premiscale
POOL_NAME=premiscale
BASE_VOL=tiny-base.qcow2
BASE_SIZE=64M
URI=qemu:///system
CMDLINE="console=ttyS0 quiet panic=-1"
# Load order matters: another order fails with "Unknown symbol".
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk)

SELF="$(readlink -f "${BASH_SOURCE[0]}")"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root"
for cmd in apt-get apt-cache dpkg-deb cpio gzip find; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found; run test/scripts/deps.sh first"
done

up_to_date() {
  local f
  for f in "$OUTDIR/vmlinuz" "$OUTDIR/initrd.img" "$OUTDIR/cmdline"; do
    [[ -s "$f" && "$f" -nt "$SELF" ]] || return 1
  done
}

# kernel_package: print the versioned package behind linux-image-amd64.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 ~ /Depends:/ && $2 ~ /^linux-image-[0-9].*-amd64$/ {print $2; exit}'
}

# decompress_ko SRC DST: copy a kernel module, decompressing .ko.xz/.ko.zst/.ko.gz.
decompress_ko() {
  local src="$1" dst="$2"
  case "$src" in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz)
      if command -v xz >/dev/null 2>&1; then
        xz -dc "$src" >"$dst"
      else
        busybox xzcat "$src" >"$dst"
      fi
      ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *.ko.zst)
      command -v zstd >/dev/null 2>&1 || die "zstd needed to decompress $src"
      zstd -qdc "$src" >"$dst"
      ;;
    *) die "unknown module format: $src" ;;
  esac
}

write_init() {
  local dest="$1"
  cat >"$dest" <<'INIT'
#!/bin/sh
# PremiScale test guest init (busybox-static). Built by test/guest/build.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
for m in $(cat /lib/modules/order); do
  insmod "/lib/modules/$m.ko" || echo "premiscale-init: insmod $m failed"
done
# The disk node appears when virtio_blk probes; allow it a moment.
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 30 ]; do
  sleep 0.1
  i=$((i + 1))
done
disk=no
[ -b /dev/vda ] && disk=yes

name=""
tick=1
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hostname=*) name="${arg#hostname=}" ;;
    tick=*) tick="${arg#tick=}" ;;
  esac
done
if [ -z "$name" ] && [ -r /sys/class/dmi/id/product_serial ]; then
  serial="$(cat /sys/class/dmi/id/product_serial 2>/dev/null)"
  for kv in $(echo "$serial" | tr ';' ' '); do
    case "$kv" in
      h=*) name="${kv#h=}" ;;
      hostname=*) name="${kv#hostname=}" ;;
    esac
  done
fi
if [ -z "$name" ]; then
  current="$(hostname 2>/dev/null)"
  case "$current" in
    "" | "(none)" | localhost) ;;
    *) name="$current" ;;
  esac
fi
if [ -n "$name" ]; then
  hostname "$name" 2>/dev/null || true
else
  name=unknown
fi

echo "PREMISCALE-GUEST-READY disk=$disk"
echo "PREMISCALE-GUEST-HOSTNAME $name"
# Wait for each tick in the shell itself, on a FIFO nobody writes: a
# sleep process per tick costs a fork and exec, which under TCG kept an
# idle guest ticking every 50 ms at about a fifth of a core.
mkfifo /tick.fifo
exec 3<>/tick.fifo
n=0
while :; do
  read -t "$tick" -u 3 _
  [ $? -gt 128 ] || sleep "$tick" # no timed read here: a process per tick
  n=$((n + 1))
  echo "PREMISCALE-GUEST-TICK $n"
done
INIT
  chmod 0755 "$dest"
}

build_guest() {
  local pkg deb work root moddir m src
  mkdir -p "$CACHE_DIR" "$OUTDIR"
  chmod 0755 "$CACHE_DIR" "$OUTDIR"

  pkg="$(kernel_package)"
  if [[ -z "$pkg" ]]; then
    log "apt-cache does not know linux-image-amd64 yet; running apt-get update"
    apt-get update -q >&2
    pkg="$(kernel_package)"
  fi
  [[ -n "$pkg" ]] || die "cannot find the versioned package behind linux-image-amd64"
  local kver="${pkg#linux-image-}"
  log "kernel package: $pkg"

  deb="$(find "$CACHE_DIR" -maxdepth 1 -name "${pkg}_*_amd64.deb" -size +1M | sort | tail -n1)"
  if [[ -z "$deb" ]]; then
    log "downloading $pkg into $CACHE_DIR"
    # apt-get download writes to the current directory; let apt's sandbox
    # user write there (else apt warns and downloads unsandboxed as root).
    local dl
    dl="$(mktemp -d "$CACHE_DIR/.download.XXXXXX")"
    if id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
    (cd "$dl" && apt-get download -q "$pkg" >&2) ||
      { apt-get update -q >&2 && (cd "$dl" && apt-get download -q "$pkg" >&2); } ||
      { rm -rf "$dl"; die "apt-get download $pkg failed"; }
    deb="$(find "$dl" -maxdepth 1 -name "${pkg}_*_amd64.deb" | head -n1)"
    [[ -n "$deb" ]] || { rm -rf "$dl"; die "apt-get download left no ${pkg}_*.deb"; }
    chown root:root "$deb"
    chmod 0644 "$deb"
    mv -f "$deb" "$CACHE_DIR/"
    deb="$CACHE_DIR/$(basename "$deb")"
    rm -rf "$dl"
  else
    log "using cached $deb"
  fi

  work="$(mktemp -d /tmp/premiscale-guest.XXXXXX)"
  # shellcheck disable=SC2064 # expand $work now, on purpose
  trap "rm -rf '$work'" EXIT
  log "extracting $(basename "$deb")"
  dpkg-deb -x "$deb" "$work/pkg"

  local vmlinuz="$work/pkg/boot/vmlinuz-$kver"
  [[ -f "$vmlinuz" ]] || vmlinuz="$(find "$work/pkg/boot" -name 'vmlinuz-*' | head -n1)"
  [[ -f "$vmlinuz" ]] || die "no vmlinuz in $deb"
  moddir="$(find "$work/pkg/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)"
  [[ -d "$moddir" ]] || die "no lib/modules in $deb"

  root="$work/root"
  mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
  cp "$(command -v busybox)" "$root/bin/busybox"
  [[ "$(file -b "$root/bin/busybox" 2>/dev/null || echo static)" == *static* ]] ||
    log "warning: $(command -v busybox) may not be static (install busybox-static)"
  ln -s busybox "$root/bin/sh"
  mknod -m 0600 "$root/dev/console" c 5 1
  mknod -m 0666 "$root/dev/null" c 1 3
  : >"$root/lib/modules/order"
  for m in "${MODULES[@]}"; do
    src="$(find "$moddir" -name "$m.ko" -o -name "$m.ko.*" | head -n1)"
    if [[ -z "$src" ]]; then
      # Built into this kernel: nothing to load.
      if grep -qE "/$m\.ko" "$moddir/modules.builtin" 2>/dev/null; then
        log "module $m is built in"
        continue
      fi
      die "module $m not found in $deb"
    fi
    decompress_ko "$src" "$root/lib/modules/$m.ko"
    printf '%s\n' "$m" >>"$root/lib/modules/order"
  done
  write_init "$root/init"

  log "writing $OUTDIR/initrd.img"
  (cd "$root" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --owner 0:0 --quiet) | gzip -9n >"$work/initrd.img"
  install -m 0644 "$work/initrd.img" "$OUTDIR/initrd.img.tmp"
  mv -f "$OUTDIR/initrd.img.tmp" "$OUTDIR/initrd.img"
  install -m 0644 "$vmlinuz" "$OUTDIR/vmlinuz.tmp"
  mv -f "$OUTDIR/vmlinuz.tmp" "$OUTDIR/vmlinuz"
  printf '%s\n' "$CMDLINE" >"$OUTDIR/cmdline.tmp"
  chmod 0644 "$OUTDIR/cmdline.tmp"
  mv -f "$OUTDIR/cmdline.tmp" "$OUTDIR/cmdline"
  printf '%s\n' "$pkg" >"$OUTDIR/kernel-package"
  rm -rf "$work"
  trap - EXIT
}

ensure_base_volume() {
  if ! command -v virsh >/dev/null 2>&1 ||
    ! timeout 10 virsh -q -c "$URI" pool-info "$POOL_NAME" >/dev/null 2>&1; then
    log "libvirt pool '$POOL_NAME' not reachable; skipping $BASE_VOL (run test/scripts/libvirtd.sh start, then this again)"
    return 0
  fi
  local target
  target="$(virsh -q -c "$URI" pool-dumpxml "$POOL_NAME" |
    sed -n 's:.*<path>\(.*\)</path>.*:\1:p' | head -n1)"
  [[ -n "$target" ]] || die "cannot read the target path of pool '$POOL_NAME'"
  mkdir -p "$target"
  if [[ -f "$target/$BASE_VOL" ]]; then
    log "base volume exists: $target/$BASE_VOL"
  else
    command -v qemu-img >/dev/null 2>&1 || die "qemu-img not found; run test/scripts/deps.sh first"
    log "creating base volume $target/$BASE_VOL ($BASE_SIZE)"
    qemu-img create -q -f qcow2 "$target/$BASE_VOL" "$BASE_SIZE"
  fi
  virsh -q -c "$URI" pool-refresh "$POOL_NAME" >/dev/null ||
    log "warning: pool-refresh $POOL_NAME failed (is the pool active?)"
}

if up_to_date; then
  log "up to date: $OUTDIR/vmlinuz $OUTDIR/initrd.img"
else
  build_guest
  log "built $OUTDIR/vmlinuz $OUTDIR/initrd.img (cmdline: $CMDLINE)"
fi
ensure_base_volume
