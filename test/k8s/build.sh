#!/usr/bin/env bash
# Usage: test/k8s/build.sh   (prints the directory holding bin/ and kwok/)
#
# Builds the real Kubernetes control plane the tests run against, from the Go
# module proxy alone, once per machine: the multi-call binary of
# test/k8s/controlplane (kube-apiserver, kube-controller-manager,
# kube-scheduler and etcd of the pinned release) and kwok, which simulates
# kubelets. The result is cached outside the repository under
# PSTEST_K8S_CACHE (default /var/cache/premiscale-test/k8s), keyed by a hash
# of what was built, so a second run (and every later `make test`) takes no
# time. Cold it costs ~25 minutes on 2 cores; see README "Tests".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
KWOK_VERSION=v0.8.0
K8S_VERSION=v1.37.2

log() { printf 'k8s/build.sh: %s\n' "$*" >&2; }

key=$( (cat "$here/controlplane/go.mod" "$here/controlplane/go.sum" "$here/controlplane/main.go"; echo "$KWOK_VERSION") | sha256sum | cut -c1-12)
out="${PSTEST_K8S_CACHE:-/var/cache/premiscale-test/k8s}/$K8S_VERSION-$key"
if [[ -f "$out/complete" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out/bin" "$out/kwok"
start=$(date +%s)
log "building the control plane $K8S_VERSION into $out (once per machine; ~25 min cold)"
# No -trimpath: the k8s.io staging packages this shares with PremiScale's own
# build (client-go, api, apimachinery) then come from the same build cache.
(cd "$here/controlplane" && go build \
  -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean" \
  -o "$out/bin/controlplane" .)
log "building kwok $KWOK_VERSION"
GOBIN="$out/bin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
# kwok starts only with Stage configs: its module ships the defaults.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  [[ -f "$stages/$f" ]] || { log "missing kwok stage $stages/$f"; ls -R "$stages" >&2; exit 1; }
  cat "$stages/$f"
  echo "---"
done > "$out/kwok/stages.yaml"
touch "$out/complete"
log "built in $(( $(date +%s) - start )) s"
echo "$out"
