#!/usr/bin/env bash
# Usage: test/scripts/bench.sh [BENCHTIME]
#
# What `make bench` runs: sets up libvirtd like make test, runs the
# benchmarks in test/ (default -benchtime 3x) and rewrites BENCHMARKS.md with
# the raw `go test -bench` output and a table of ratios against the direct
# go-libvirt baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCHTIME="${1:-3x}"

test/scripts/deps.sh
test/scripts/libvirtd.sh start
trap 'test/scripts/libvirtd.sh stop' EXIT

export REQUIRE_LIBVIRT=1
cmd="go test -run '^\$' -bench ScaleToRunning -benchtime $BENCHTIME ./test/"
raw="$(mktemp)"
eval "$cmd" | tee "$raw"

{
  cat <<HDR
# Benchmarks

Produced by \`make bench\` (\`$cmd\`) on $(date -u +%Y-%m-%d), $(nproc) cores,
$(go version | awk '{print $3}'). Machines here are shared and noisy: compare
ratios, not absolute times. Each iteration measures the baseline and
PremiScale side by side.

## Scale 0 -> N to all domains running (libvirt test driver through libvirtd)

*PremiScale*: \`set-desired\` Update to a group workflow on the embedded
Temporal server (SQLite, WAL), one worker, until the status Query shows N
running and nothing in flight (polled every 10 ms). *Direct*: the same libvirt
calls (create qcow2 volume, define, start, read state) made with go-libvirt
in a plain sequential loop, no Temporal.

| N | direct (ms) | PremiScale (ms) | PremiScale per VM (ms) | ratio PremiScale / direct |
|---|---|---|---|---|
HDR
  awk '/^BenchmarkScaleToRunning\/N=/ {
    split($1, a, "[=-]"); n=a[2];
    for (i=1; i<=NF; i++) { if ($i=="direct-ms") d=$(i-1); if ($i=="premiscale-ms") p=$(i-1); if ($i=="premiscale-ms/vm") v=$(i-1); if ($i=="ratio") r=$(i-1) }
    printf "| %s | %s | %s | %s | %.1fx |\n", n, d, p, v, r }' "$raw"
  cat <<'TAIL'

The gap is the price of durability: every step is a Temporal activity whose
scheduling, start and completion are persisted before the next one runs, and
each VM is a child workflow. In exchange a crash at any point loses nothing
(see the SIGKILL end-to-end test). On real QEMU hosts a domain start alone
takes 1.2-1.6 s, which dwarfs this overhead.

## Raw output

```
TAIL
  cat "$raw"
  echo '```'
} > BENCHMARKS.md
rm -f "$raw"
echo "bench.sh: wrote BENCHMARKS.md" >&2
