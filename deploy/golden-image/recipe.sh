#!/usr/bin/env bash
# Usage: deploy/golden-image/recipe.sh OUTDIR [--kubernetes v1.37] [--disk-size 20G]
#
# Writes the recipe of a kubeadm node image into OUTDIR, without touching
# the network: the files the image gets (kernel modules and sysctls that
# kubeadm's preflight checks, the Kubernetes package repository, cloud-init
# settings), the virt-customize commands that install and configure it,
# and OUTDIR/build.sh, which a person runs on a machine with libguestfs and
# the network to turn a Debian 12 cloud image into OUTDIR/k8s-node.qcow2
# of --disk-size, then upload it to every host of the groups that use it
# (premiscale hosts upload: created at the image's size, its checksum
# verified on each host). The Kubernetes minor defaults to the one this
# project builds against (go.mod's k8s.io/api v0.X -> v1.X).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

out=""
disk="20G"
kube=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubernetes) kube="$2"; shift 2 ;;
    --disk-size) disk="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "recipe.sh: unknown flag $1" >&2; exit 2 ;;
    *) [[ -z "$out" ]] || { echo "recipe.sh: one OUTDIR only" >&2; exit 2; }; out="$1"; shift ;;
  esac
done
[[ -n "$out" ]] || { echo "recipe.sh: OUTDIR is required" >&2; exit 2; }
if [[ -z "$kube" ]]; then
  minor="$(awk '$1 == "k8s.io/api" { split($2, v, "."); print v[2] }' "$here/../../go.mod")"
  [[ -n "$minor" ]] || { echo "recipe.sh: no k8s.io/api in go.mod; pass --kubernetes v1.N" >&2; exit 2; }
  kube="v1.$minor"
fi
[[ "$kube" =~ ^v1\.[0-9]+$ ]] || { echo "recipe.sh: --kubernetes must be v1.N (a minor), got $kube" >&2; exit 2; }
[[ "$disk" =~ ^[0-9]+[KMGT]$ ]] || { echo "recipe.sh: --disk-size must be like 20G, got $disk" >&2; exit 2; }

files="$out/files"
mkdir -p "$files/etc/modules-load.d" "$files/etc/sysctl.d" "$files/etc/apt/sources.list.d" \
  "$files/etc/apt/keyrings" "$files/etc/cloud/cloud.cfg.d"

# kubeadm's preflight: br_netfilter and overlay loaded, bridged traffic seen
# by iptables, IPv4 forwarding on (FileContent--proc-sys-net-ipv4-ip_forward).
cat > "$files/etc/modules-load.d/kubernetes.conf" <<'EOF'
overlay
br_netfilter
EOF
cat > "$files/etc/sysctl.d/99-kubernetes.conf" <<'EOF'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
EOF
# The package repository of the Kubernetes minor the cluster runs.
cat > "$files/etc/apt/sources.list.d/kubernetes.list" <<EOF
deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/$kube/deb/ /
EOF
# Every clone grows its root partition and file system to its disk, and
# takes its identity (machine-id, host keys) from its own first boot.
cat > "$files/etc/cloud/cloud.cfg.d/90-premiscale.cfg" <<'EOF'
growpart:
  mode: auto
  devices: ["/"]
resize_rootfs: true
ssh_deletekeys: true
EOF

# virt-customize --commands-from-file: one command a line.
cat > "$out/customize.cmds" <<EOF
copy-in $files/etc/modules-load.d/kubernetes.conf:/etc/modules-load.d
copy-in $files/etc/sysctl.d/99-kubernetes.conf:/etc/sysctl.d
copy-in $files/etc/cloud/cloud.cfg.d/90-premiscale.cfg:/etc/cloud/cloud.cfg.d
install containerd,apt-transport-https,ca-certificates,curl,gpg,conntrack,socat
run-command curl -fsSL https://pkgs.k8s.io/core:/stable:/$kube/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes.gpg
copy-in $files/etc/apt/sources.list.d/kubernetes.list:/etc/apt/sources.list.d
install kubeadm,kubelet,kubectl
run-command apt-mark hold kubeadm kubelet kubectl
run-command mkdir -p /etc/containerd && containerd config default > /etc/containerd/config.toml && sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
run-command sed -i '/\sswap\s/d' /etc/fstab
run-command systemctl enable containerd kubelet
run-command cloud-init clean --machine-id --logs
run-command rm -f /etc/ssh/ssh_host_*
EOF

cat > "$out/build.sh" <<EOF
#!/usr/bin/env bash
# Builds k8s-node.qcow2 (Kubernetes $kube, $disk) here and uploads it to
# every host of the groups whose template.baseVolume is k8s-node.qcow2.
# Needs libguestfs-tools, qemu-utils, the network, and PremiScale's config.
set -euo pipefail
cd "\$(dirname "\$0")"
curl -fLO https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2
cp debian-12-generic-amd64.qcow2 k8s-node.qcow2
# The disk size every clone starts from (clones are overlays of it).
qemu-img resize k8s-node.qcow2 $disk
virt-customize -a k8s-node.qcow2 --commands-from-file customize.cmds
premiscale -c "\${PREMISCALE_CONFIG_PATH:-/etc/premiscale/config.yaml}" hosts upload k8s-node.qcow2 --volume k8s-node.qcow2
premiscale -c "\${PREMISCALE_CONFIG_PATH:-/etc/premiscale/config.yaml}" hosts check
EOF
chmod +x "$out/build.sh"
echo "recipe.sh: wrote $out (Kubernetes $kube, disk $disk); run $out/build.sh" >&2
