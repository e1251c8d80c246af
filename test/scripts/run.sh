#!/usr/bin/env bash
# Usage: test/scripts/run.sh BIN CONFIG
#
# What `make run` runs: installs missing Debian packages, starts virtlogd +
# libvirtd if needed, builds the tiny guest and its base volume, prints how to
# drive the demo, then runs the controller in the foreground on the embedded
# Temporal server. Ctrl-C stops the controller (its VMs stay; restarting it
# resumes the group) and the daemons this script started.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:?usage: run.sh BIN CONFIG}"
CONFIG="${2:?usage: run.sh BIN CONFIG}"

test/scripts/deps.sh
test/scripts/libvirtd.sh start
trap 'test/scripts/libvirtd.sh stop' EXIT
test/guest/build.sh

"$BIN" --validate -c "$CONFIG"
cat <<MSG

PremiScale is starting with $CONFIG on its embedded Temporal server.
In another shell:

  $BIN -c $CONFIG status demo            # members, events, last error
  $BIN -c $CONFIG scale demo 3 --wait    # grow to 3 real tiny VMs
  $BIN -c $CONFIG scale demo 1           # shrink (newest first)
  $BIN -c $CONFIG pause demo | resume demo
  virsh -c qemu:///system list --all     # what libvirt has
  tail -f /var/log/libvirt/qemu/demo-1-console.log   # a guest's console

Watch the group workflow, its VM children and their histories in the
Temporal UI: http://127.0.0.1:8233/namespaces/default/workflows
Metrics and probes: http://127.0.0.1:9464/metrics, /healthz, /readyz

With the temporal CLI (optional, see README):
  temporal workflow query  --workflow-id premiscale/group/demo --type status
  temporal workflow update execute --workflow-id premiscale/group/demo --name set-desired --input '{"desired": 2}'

Ctrl-C stops the controller; its VMs stay and a restart picks them up.

MSG
"$BIN" -c "$CONFIG"
