#!/usr/bin/env bash
# Usage: test/scripts/test.sh [go test args...]
#
# What `make test` runs: installs the Debian packages the tests need if any is
# missing, starts virtlogd + libvirtd (unless already running) and three more
# independent libvirtd hosts on loopback ports (test/scripts/hosts.sh) and a
# throwaway PostgreSQL cluster (test/scripts/postgres.sh), builds
# the tiny guest, runs every Go test with real libvirtd required, then stops
# only the daemons it started. Extra arguments go to `go test` (e.g. -run Foo);
# TEST_PACKAGES (default ./...) narrows the packages: `make crash KILLS=500`
# is the long crash-safety run (TEST_PACKAGES=./test -run TestKillLoop).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

test/scripts/deps.sh
test/scripts/libvirtd.sh start
trap 'test/scripts/libvirtd.sh stop' EXIT
if [[ -z "$(test/scripts/hosts.sh uris)" ]]; then
  # No hosts running: start them from empty directories, so that nothing a
  # previous run left behind is in their state.
  rm -rf "${PSTEST_HOSTS_DIR:-/var/lib/premiscale-hosts}"
fi
test/scripts/hosts.sh start 3
# The three hosts exist only for the tests: whatever guests a failed test
# left on them are destroyed before the hosts stop, so that no QEMU process
# outlives the run.
destroy_host_guests() {
  local name port dom
  while read -r name port; do
    for dom in $(virsh -q -c "qemu+tcp://127.0.0.1:$port/system" list --name 2>/dev/null); do
      log "destroying guest $dom left on $name"
      virsh -q -c "qemu+tcp://127.0.0.1:$port/system" destroy "$dom" >/dev/null 2>&1 || true
    done
  done < <(test/scripts/hosts.sh uris)
}
# A throwaway PostgreSQL for the embedded server's PostgreSQL persistence.
test/scripts/postgres.sh start
PSTEST_POSTGRES_URL="$(test/scripts/postgres.sh url)"
export PSTEST_POSTGRES_URL
trap 'destroy_host_guests; test/scripts/postgres.sh stop; test/scripts/hosts.sh stop; test/scripts/libvirtd.sh stop' EXIT
test/guest/build.sh
# helm for the chart's tests (lint, template): built from the module proxy
# once, into GOPATH/bin.
HELM_VERSION=v3.22.0
if ! command -v helm >/dev/null && [[ ! -x "$(go env GOPATH)/bin/helm" ]]; then
  log "installing helm $HELM_VERSION (go install, a few minutes once)"
  go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

# The real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok) for the tests that need
# one: built from the module proxy once per machine, then cached.
PSTEST_K8S_DIR="$(test/k8s/build.sh)"
export PSTEST_K8S_DIR

# Every service and tool a test needs (libvirtd, the hosts, the tiny guest,
# Prometheus, PostgreSQL, helm, systemd-analyze, the control plane) is here:
# a test that finds one missing fails instead of skipping.
export PSTEST_REQUIRE_ALL=1
export TINY_GUEST_DIR=/var/lib/premiscale/guest
packages="${TEST_PACKAGES:-./...}"
log "go test ${GO_TEST_FLAGS:-} $packages $*"
# shellcheck disable=SC2086
go test -count=1 ${GO_TEST_FLAGS:-} -timeout 40m $packages "$@"
# The loader and validator take files written by hand: fuzz them for a
# bounded time on every run (the corpus above ran as a plain test).
if [[ "$packages" == "./..." && $# -eq 0 ]]; then
  # The vendored SDK's patch carries its own unit test (third_party/README.md);
  # the SDK is a module of its own, outside ./... .
  log "the SDK patch's own test"
  (cd third_party/temporal-sdk-go && go test -count=1 -run 'CancelAfterVersionMarker' ./internal/)
  log "fuzzing the config loader for ${FUZZ_TIME:=60s}"
  go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime "$FUZZ_TIME" ./config
fi
