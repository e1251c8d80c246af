#!/usr/bin/env bash
# Usage: test/scripts/test.sh [go test args...]
#
# What `make test` runs: installs the Debian packages the tests need if any is
# missing, starts virtlogd + libvirtd (unless already running), builds the tiny
# guest, runs every Go test with real libvirtd required, then stops only the
# daemons it started. Extra arguments go to `go test` (e.g. -run Foo).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

test/scripts/deps.sh
test/scripts/libvirtd.sh start
trap 'test/scripts/libvirtd.sh stop' EXIT
test/guest/build.sh

export REQUIRE_LIBVIRT=1
export TINY_GUEST_DIR=/var/lib/premiscale/guest
log "go test ${GO_TEST_FLAGS:-} ./... $*"
# shellcheck disable=SC2086
go test -count=1 ${GO_TEST_FLAGS:-} -timeout 40m ./... "$@"
