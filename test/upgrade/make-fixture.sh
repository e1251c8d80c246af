#!/usr/bin/env bash
# Usage: test/upgrade/make-fixture.sh
#
# Writes test/testdata/upgrade/temporal-v1.30.8.db.gz and its .json: the
# SQLite database of the Temporal server before the one PremiScale embeds
# (v1.30.8, schema 0.10; v1.31 already has 0.11), holding the group
# workflows of a PremiScale controller that ran against it, as
# TestADatabaseOfThePreviousServerOpensAndItsGroupsResume opens it with the
# current server. Run by hand when the embedded server moves on (then pin
# previous/go.mod to the release before the new one): it builds a second
# Temporal server (~10 minutes on 2 cores) and needs libvirtd with its test
# driver (test/scripts/libvirtd.sh start) and python3 for the checkpoint.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
out=$here/../testdata/upgrade
version=$(sed -n 's/^require go.temporal.io\/server \(v[^ ]*\).*/\1/p' previous/go.mod)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
log() { printf 'make-fixture: %s\n' "$*" >&2; }

log "building the Temporal server $version and premiscale"
(cd previous && go build -o "$work/previous" .)
(cd ../.. && go build -o "$work/premiscale" ./cmd/premiscale)

port=47233
mkdir -m 0700 "$work/state"
"$work/previous" -db "$work/state/temporal.db" -port $port >"$work/previous.log" 2>&1 &
prev=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done

# Two groups, their VMs on libvirtd's test driver; a fixed installation,
# which the test gives its controller too.
cat >"$work/config.yaml" <<YAML
version: v1alpha1
controller:
  stateDir: $work/state
  installation: ps-upgrade-fixture
  metrics: {listen: "127.0.0.1:0"}
  temporal: {address: "127.0.0.1:$port"}
autoscale:
  hosts:
    - {name: testhost, uri: "test+unix:///default", pool: default-pool, cpuOvercommit: 16, memoryOvercommit: 16}
  groups:
    - name: upg-a
      max: 5
      desired: 2
      scaling: {evaluationInterval: 2s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
    - name: upg-b
      max: 5
      desired: 1
      scaling: {evaluationInterval: 2s}
      template: {diskSize: 64MiB, memory: 64MiB, domainType: qemu, shutdownTimeout: 0s}
YAML
"$work/premiscale" -c "$work/config.yaml" --log-file "$work/controller.log" &
ctl=$!
ps() { "$work/premiscale" -c "$work/config.yaml" "$@"; }
for g in upg-a upg-b; do
  for _ in $(seq 300); do ps status "$g" -o json 2>/dev/null | python3 -c '
import json,sys; s=json.load(sys.stdin); s=s[0] if isinstance(s,list) else s
sys.exit(0 if s.get("desired",0) > 0 and s.get("running",-1) == s["desired"] else 1)' 2>/dev/null && break; sleep 1; done
done
ps scale upg-a 3 >/dev/null
ps status -o json >"$work/status.json"
written=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 5
kill -TERM $ctl; wait $ctl || true
kill -TERM $prev; wait $prev || true
python3 - "$work/state/temporal.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.execute("VACUUM"); c.close()
PY
mkdir -p "$out"
gzip -9 -n -c "$work/state/temporal.db" >"$out/temporal-$version.db.gz"
python3 - "$work/status.json" "$version" "$written" >"$out/temporal-$version.json" <<'PY'
import json, sys
groups = json.load(open(sys.argv[1]))
print(json.dumps({
    "server": sys.argv[2], "written": sys.argv[3], "installation": "ps-upgrade-fixture",
    # desired: where the groups were; configDesired: what config.yaml above says.
    "groups": {g["group"]: {"desired": g["desired"], "configDesired": {"upg-a": 2, "upg-b": 1}[g["group"]]} for g in groups},
}, indent=2))
PY
log "wrote $out/temporal-$version.db.gz ($(stat -c %s "$out/temporal-$version.db.gz") bytes) and its .json"
