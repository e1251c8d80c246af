#!/usr/bin/env bash
# Usage: third_party/verify-sdk.sh   (make verify-sdk; make lint runs it)
#
# Proves that third_party/temporal-sdk-go is go.temporal.io/sdk at the
# version go.mod replaces, as the Go module proxy serves it, plus
# third_party/patches/*.patch, and nothing else:
#   1. download the module (go mod download: checked against go.sum's
#      checksum database entry like any dependency);
#   2. keep what the build needs: Go files that are not tests, outside
#      .github/ and internal/cmd/ (the SDK's CI and release tooling, main
#      packages nothing imports), and LICENSE, README.md, go.mod, go.sum;
#   3. apply the patches in order;
#   4. compare with the vendored tree, byte for byte, both ways.
# Any difference fails, printed as a diff. Upgrading: see third_party/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

vendored=third_party/temporal-sdk-go
# The version go.mod requires is the one the replace stands for.
version="$(sed -n 's#^[[:space:]]*go.temporal.io/sdk \(v[^ ]*\).*#\1#p' go.mod | head -n1)"
if [[ -z "$version" ]] || ! grep -qx "replace go.temporal.io/sdk => ./$vendored" go.mod; then
  echo "verify-sdk: go.mod must require go.temporal.io/sdk at a version and replace it with ./$vendored" >&2
  exit 1
fi

log() { printf 'verify-sdk: %s\n' "$*" >&2; }

dir="$(GOFLAGS=-mod=mod go mod download -json "go.temporal.io/sdk@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
[[ -d "$dir" ]] || { log "go mod download go.temporal.io/sdk@$version gave no directory"; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
want="$tmp/sdk"
mkdir -p "$want"
(cd "$dir" && find . -type f \( \( -name '*.go' ! -name '*_test.go' ! -path './internal/cmd/*' ! -path './.github/*' \) \
  -o -path ./LICENSE -o -path ./README.md -o -path ./go.mod -o -path ./go.sum \) -print0 |
  tar --null -T - -cf -) | tar -xf - -C "$want"
chmod -R u+w "$want"

shopt -s nullglob
patches=(third_party/patches/*.patch)
for p in "${patches[@]}"; do
  if ! patch -d "$want" -p1 --quiet --forward --no-backup-if-mismatch <"$p" >"$tmp/patch.log" 2>&1; then
    log "$p does not apply to go.temporal.io/sdk@$version:"
    cat "$tmp/patch.log" >&2
    exit 1
  fi
done

if ! diff -r "$want" "$vendored" >"$tmp/diff" 2>&1; then
  log "$vendored is not go.temporal.io/sdk@$version plus ${#patches[@]} patch(es):"
  sed "s#$want#upstream+patches#g" "$tmp/diff" | head -n 200 >&2
  exit 1
fi
log "$vendored is go.temporal.io/sdk@$version plus ${#patches[@]} patch(es): $(find "$vendored" -type f | wc -l) files, identical"
