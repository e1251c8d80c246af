package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/premiscale/premiscale/activities"
)

// guideMachines are the machines docs/production.md's host-side blocks
// name in their first line ("# on ..."), and the boxes that play them.
var guideMachines = map[string][]string{
	"the machine that keeps the libvirt CA": {"ca"},
	"each TLS host":                         {"kvm1"},
	"each SSH host":                         {"kvm2"},
	"each host":                             {"kvm1", "kvm2"},
	"the machine that runs PremiScale":      {"ps"},
	"a control-plane node of the cluster":   {"cp"},
	"a checkout of PremiScale":              {"ps"},
}

// boxSetup makes a box's private directories: a copy of /etc (names of
// the guide's machines resolving over loopback, libvirtd's defaults as a
// Debian host's systemd units and polkit rules give them), and empty trees
// for libvirt's state with the machine's QEMU capability cache (probing
// QEMU again costs ~8 s of CPU per daemon).
const boxSetup = `
set -euo pipefail
d="$1"
mkdir -p "$d"/etc "$d"/run "$d"/lib "$d"/log "$d"/cache "$d"/home
cp -a /etc/. "$d/etc/"
for pair in lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
  src="${pair#*:}"
  [[ -d "$src" ]] || continue
  (cd "$src" && find . -type d -print0 | tar --null --no-recursion -T - -cf -) | tar -xpf - -C "$d/${pair%%:*}"
done
cp -p /var/cache/libvirt/qemu/capabilities/*.xml "$d/cache/qemu/capabilities/" 2>/dev/null || true
rm -f "$d"/etc/libvirt/qemu/*.xml "$d"/etc/libvirt/qemu/autostart/* \
  "$d"/etc/libvirt/qemu/networks/*.xml "$d"/etc/libvirt/qemu/networks/autostart/* \
  "$d"/etc/libvirt/storage/*.xml "$d"/etc/libvirt/storage/autostart/* "$d"/etc/libvirt/secrets/* 2>/dev/null || true
printf '127.0.0.1 localhost\n127.0.0.2 kvm1.example.internal kvm1\n127.0.0.3 kvm2.example.internal kvm2\n' >"$d/etc/hosts"
conf="$d/etc/libvirt/libvirtd.conf"
for kv in 'unix_sock_group = "libvirt"' 'unix_sock_rw_perms = "0770"' 'auth_unix_rw = "none"' 'listen_tcp = 0' 'listen_tls = 1'; do
  sed -i "/^[[:space:]]*${kv%% =*}[[:space:]]*=/d" "$conf"
  printf '%s\n' "$kv" >>"$conf"
done
`

// boxHold runs in a box's new mount namespace (inside the test's network
// namespace): the private directories over the real ones, a sysfs of this
// network namespace (so libvirt sees its bridges), then it holds the
// namespace open.
const boxHold = `
set -euo pipefail
d="$1"
mount --bind "$d/etc" /etc
mount --bind "$d/run" /run
mount --bind "$d/lib" /var/lib/libvirt
mount --bind "$d/log" /var/log/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mount --bind "$d/home" /home
mount -t sysfs sysfs /sys
touch "$d/ready"
exec sleep infinity
`

// boxPrelude precedes every script run in a box: systemctl as a Debian
// host's systemd would do the guide's calls (socket activation of
// libvirtd-tls.socket is libvirtd --listen), nothing else.
const boxPrelude = `
set -euo pipefail
box_alive() { [[ -r /proc/$1/stat ]] && ! grep -q '^[^)]*) [ZX]' "/proc/$1/stat"; }
box_start_libvirtd() {
  if ! { [[ -s /run/virtlogd.pid ]] && box_alive "$(cat /run/virtlogd.pid)"; }; then
    /usr/sbin/virtlogd -d
  fi
  if [[ -e /run/box-libvirtd-tls ]]; then /usr/sbin/libvirtd -d --listen; else /usr/sbin/libvirtd -d; fi
  local i
  for i in $(seq 300); do
    virsh -q -c qemu:///system version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "box: libvirtd does not answer; $(tail -n 3 /var/log/libvirt/libvirtd.log 2>/dev/null)" >&2
  return 1
}
box_stop_libvirtd() {
  local pid
  pid="$(cat /run/libvirtd.pid 2>/dev/null)" || return 0
  kill "$pid" 2>/dev/null || return 0
  while box_alive "$pid"; do sleep 0.1; done
}
systemctl() {
  case "$*" in
  "stop libvirtd.service") box_stop_libvirtd ;;
  "start libvirtd.service") box_start_libvirtd ;;
  "enable --now libvirtd-tls.socket") touch /run/box-libvirtd-tls ;;
  *) echo "box: 'systemctl $*' is not played by this test" >&2; return 1 ;;
  esac
}
`

// guideBoxes is a small datacenter on this machine: one network namespace
// (loopback only, plus the hosts' bridge br0) shared by boxes, each a
// private mount namespace with its own /etc, /run, /home and libvirt state.
type guideBoxes struct {
	t      *testing.T
	dir    string
	xfer   string // every box's working directory: how files "are copied"
	bin    string // holds `premiscale`, first on every box's PATH
	netPID int
	pids   map[string]int
}

func newGuideBoxes(t *testing.T) *guideBoxes {
	t.Helper()
	dir := t.TempDir()
	// QEMU (as libvirt-qemu) and sshd's strict modes walk the path.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := &guideBoxes{t: t, dir: dir, xfer: filepath.Join(dir, "xfer"), bin: filepath.Join(dir, "bin"), pids: map[string]int{}}
	for _, d := range []string{b.xfer, b.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(premiscaleBin, filepath.Join(b.bin, "premiscale")); err != nil {
		t.Fatal(err)
	}
	netns := exec.Command("unshare", "--net", "sleep", "infinity")
	if err := netns.Start(); err != nil {
		t.Fatal(err)
	}
	b.netPID = netns.Process.Pid
	t.Cleanup(func() { _ = netns.Process.Kill(); _ = netns.Wait() })
	// Start returns before unshare has made the namespace: anything run
	// in it before then would change this machine's own network.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", b.netPID)); err == nil && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not make a network namespace within 10s")
		}
	}
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(b.netPID), "--net", "--", "sh", "-ec",
		"ip link set lo up; ip link add br0 type bridge; ip link set br0 up").CombinedOutput(); err != nil {
		t.Fatalf("network namespace: %v\n%s", err, out)
	}
	return b
}

// add makes box name and starts what it runs from the start: libvirtd on
// a host (a Debian host runs it after installation), and sshd too on one
// reached over SSH.
func (b *guideBoxes) add(name string, libvirtd, sshd bool) {
	t := b.t
	t.Helper()
	d := filepath.Join(b.dir, "box-"+name)
	if out, err := exec.Command("bash", "-c", boxSetup, "bash", d).CombinedOutput(); err != nil {
		t.Fatalf("box %s: %v\n%s", name, err, out)
	}
	hold := exec.Command("nsenter", "-t", strconv.Itoa(b.netPID), "--net", "--",
		"unshare", "--mount", "--propagation", "private", "--", "bash", "-c", boxHold, "bash", d)
	hold.Stderr = os.Stderr
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	b.pids[name] = hold.Process.Pid
	t.Cleanup(func() {
		// The daemons a box started outlive its holder: stop them by
		// their pidfiles in the box's /run.
		for _, f := range []string{"libvirtd.pid", "sshd.pid", "virtlogd.pid"} {
			if raw, err := os.ReadFile(filepath.Join(d, "run", f)); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
					if p, err := os.FindProcess(pid); err == nil {
						_ = p.Kill()
					}
				}
			}
		}
		_ = hold.Process.Kill()
		_ = hold.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(d, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("box %s: its mount namespace was not ready within 10s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if libvirtd {
		b.mustRun(name, "box_start_libvirtd")
	}
	if sshd {
		b.mustRun(name, "mkdir -p /run/sshd; ssh-keygen -A; /usr/sbin/sshd")
	}
}

// path is where a file of box name's filesystem lives from outside.
func (b *guideBoxes) path(name, inBox string) string {
	for _, m := range []struct{ from, to string }{{"/etc/", "etc"}, {"/run/", "run"}, {"/home/", "home"}} {
		if rest, ok := strings.CutPrefix(inBox, m.from); ok {
			return filepath.Join(b.dir, "box-"+name, m.to, rest)
		}
	}
	b.t.Fatalf("%s is not in a box's private directories", inBox)
	return ""
}

// run runs script with bash in box name, in the shared working directory.
func (b *guideBoxes) run(name, script string) (string, error) {
	// Entering a mount namespace moves to its root: --wd sets the
	// directory in it.
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(b.pids[name]), "--mount", "--net", "--wd="+b.xfer, "--",
		"bash", "-c", boxPrelude+script)
	cmd.Env = append(os.Environ(), "PATH="+b.bin+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (b *guideBoxes) mustRun(name, script string) string {
	b.t.Helper()
	out, err := b.run(name, script)
	if err != nil {
		b.t.Fatalf("on %s: %v\n%s\n%s", name, err, script, out)
	}
	return out
}

// TestProductionGuideHostStepsOnPrivateHosts runs docs/production.md's
// host-side blocks as they are written, in their order, each on the
// machine its first line names: a libvirt CA, a host reached over TLS
// (kvm1), a host reached over SSH (kvm2), and the machine PremiScale runs
// on. Then the guide's whole config, its upload and its host checks, which
// must find both hosts reachable with their pool, base volume, bridge and
// clock. An operator who follows the guide gets there; a guide that
// drifts from libvirt, OpenSSH or PremiScale fails here.
func TestProductionGuideHostStepsOnPrivateHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		guideSkip(t, "needs root (mount and network namespaces)")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip", "openssl", "ssh-keygen", "ssh-keyscan", "/usr/sbin/sshd", "virsh", "qemu-img", "/usr/sbin/libvirtd", "/usr/sbin/virtlogd"} {
		if _, err := exec.LookPath(tool); err != nil {
			guideSkip(t, tool+" not found (test/scripts/deps.sh installs it)")
		}
	}
	guide, err := os.ReadFile("../docs/production.md")
	if err != nil {
		t.Fatal(err)
	}
	var config string
	for _, block := range fencedBlocks(string(guide), "yaml") {
		if strings.HasPrefix(block, "# a whole config file") {
			config = block
		}
	}
	if config == "" {
		t.Fatal("the guide has no whole config file")
	}

	boxes := newGuideBoxes(t)
	boxes.add("ca", false, false)
	boxes.add("kvm1", true, false)
	boxes.add("kvm2", true, true)
	boxes.add("ps", false, false)
	// The cluster's side: the test's real control plane's CA where a
	// kubeadm control-plane node keeps it, and the chart in the checkout.
	kc := realKube(t)
	boxes.add("cp", false, false)
	if err := os.MkdirAll(boxes.path("cp", "/etc/kubernetes/pki"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(boxes.path("cp", "/etc/kubernetes/pki/ca.crt"), kc.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	chart, err := filepath.Abs("../deploy")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(chart, filepath.Join(boxes.xfer, "deploy")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(helmBinary(t), filepath.Join(boxes.bin, "helm")); err != nil {
		t.Fatal(err)
	}
	var caHash string

	ran := map[string]int{}
	configWritten := false
	for _, block := range fencedBlocks(string(guide), "sh") {
		first, _, _ := strings.Cut(block, "\n")
		role, ok := strings.CutPrefix(first, "# on ")
		if !ok {
			if role, ok = strings.CutPrefix(first, "# in "); !ok {
				continue
			}
		}
		machines := machineOf(role)
		if machines == nil {
			t.Fatalf("the guide has a block for %q, a machine this test does not play", role)
		}
		if !configWritten && strings.Contains(block, "/etc/premiscale/config.yaml") {
			// The operator writes the guide's whole config file there.
			if err := os.WriteFile(boxes.path("ps", "/etc/premiscale/config.yaml"), []byte(config), 0o640); err != nil {
				t.Fatal(err)
			}
			configWritten = true
		}
		if strings.Contains(role, "with the image in k8s-node.qcow2") {
			// deploy/golden-image builds the real one (its own test); any
			// qcow2 goes through the same upload and checks.
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(boxes.xfer, "k8s-node.qcow2"), "64M").CombinedOutput(); err != nil {
				t.Fatalf("qemu-img: %v\n%s", err, out)
			}
		}
		if strings.Contains(role, "with id_ed25519.pub copied there") {
			copyFile(t, boxes.path("ps", "/etc/premiscale/hosts/id_ed25519.pub"), filepath.Join(boxes.xfer, "id_ed25519.pub"))
		}
		for _, m := range machines {
			out := boxes.mustRun(m, block)
			t.Logf("on %s: %s\n%s", m, first, out)
			ran[m]++
			if m == "cp" && strings.Contains(block, "/etc/kubernetes/pki/ca.crt") {
				caHash = strings.TrimSpace(out)
			}
		}
	}
	for _, m := range []string{"ca", "kvm1", "kvm2", "ps", "cp"} {
		if ran[m] == 0 {
			t.Errorf("no block of the guide ran on %s", m)
		}
	}
	if !configWritten {
		t.Fatal("no block of the guide uses /etc/premiscale/config.yaml")
	}
	// The hash the guide computes is the one kubeadm join checks the
	// cluster's CA against (the test's kubelets verify joins with it).
	if caHash != kc.CAHash {
		t.Errorf("the guide's CA hash is %q, the cluster's discovery hash is %q", caHash, kc.CAHash)
	}
	// The rendered RBAC is the chart's: the ServiceAccount and both roles
	// with their bindings, in kube-system.
	rbac, err := os.ReadFile(filepath.Join(boxes.xfer, "premiscale-rbac.yaml"))
	if err != nil {
		t.Fatalf("the guide's helm template wrote nothing: %v", err)
	}
	for _, want := range []string{"kind: ServiceAccount", "kind: ClusterRole\n", "kind: ClusterRoleBinding", "kind: Role\n", "kind: RoleBinding", "namespace: kube-system", "name: premiscale\n"} {
		if !strings.Contains(string(rbac), want) {
			t.Errorf("premiscale-rbac.yaml lacks %q:\n%s", want, rbac)
		}
	}

	// The guide's checks, as written: exit 0, or 1 only for what this
	// machine's hardware decides (capacity: 2 CPUs here against the
	// guide's 4-vCPU VMs; the domain type: KVM may be missing).
	hardware := map[string]bool{"capacity": true, "domain type": true}
	checks := 0
	for _, block := range fencedBlocks(string(guide), "sh") {
		for _, line := range shellLines(block) {
			if !strings.HasPrefix(line, "premiscale ") || !strings.Contains(line, " hosts check") {
				continue
			}
			checks++
			out, err := boxes.run("ps", line)
			if err != nil {
				t.Logf("%s: %v\n%s", line, err, out)
			}
		}
	}
	if checks < 2 {
		t.Errorf("the guide has %d hosts check lines, want at least 2", checks)
	}
	out, err := boxes.run("ps", "premiscale -c /etc/premiscale/config.yaml hosts check -o json")
	var reports []activities.HostReport
	if jerr := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &reports); jerr != nil {
		t.Fatalf("hosts check -o json: %v (%v)\n%s", jerr, err, out)
	}
	if len(reports) != 2 {
		t.Fatalf("hosts check reported %d hosts, want kvm1 and kvm2:\n%s", len(reports), out)
	}
	onlyHardware := true
	for _, r := range reports {
		seen := map[string]string{}
		for _, f := range r.Findings {
			if f.Severity == activities.SeverityError && !hardware[f.Check] {
				onlyHardware = false
			}
			if prev, ok := seen[f.Check]; !ok || prev == activities.SeverityOK {
				seen[f.Check] = f.Severity
			}
		}
		for _, c := range []string{"connect", "pool", "base volume", "network", "clock"} {
			if seen[c] != activities.SeverityOK {
				t.Errorf("%s: check %q is %q, want ok:\n%s", r.Host, c, seen[c], out)
			}
		}
		if !r.ClockMeasured {
			t.Errorf("%s: the clock was not measured (a directory pool lets it)", r.Host)
		}
	}
	if err != nil && !onlyHardware {
		t.Errorf("hosts check failed for more than this machine's hardware: %v\n%s", err, out)
	}

	// What the guide's security lines buy, each shown to hold:
	// tls_allowed_dn_list refuses another certificate of the same CA,
	boxes.mustRun("ca", `mkdir -p intruder
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=example/CN=intruder" -keyout intruder/clientkey.pem -out intruder.csr
openssl x509 -req -in intruder.csr -CA cacert.pem -CAkey cakey.pem -days 1 -extfile client.ext -out intruder/clientcert.pem
cp cacert.pem intruder/`)
	if out, err := boxes.run("ps", `virsh -c "qemu+tls://kvm1.example.internal/system?pkipath=$PWD/intruder" version`); err == nil {
		t.Errorf("kvm1 took a client certificate outside tls_allowed_dn_list:\n%s", out)
	}
	// and known_hosts pins kvm2: another key for its name is refused, with
	// what to do.
	boxes.mustRun("ps", `ssh-keygen -q -t ed25519 -N '' -f other_host_key
sed 's#/etc/premiscale/hosts/known_hosts#'"$PWD"'/other_known_hosts#' /etc/premiscale/config.yaml >other-config.yaml
printf 'kvm2.example.internal %s\n' "$(cut -d' ' -f1,2 other_host_key.pub)" >other_known_hosts`)
	out, err = boxes.run("ps", "premiscale -c other-config.yaml hosts check kvm2")
	if err == nil || !strings.Contains(out, "key mismatch") || !strings.Contains(out, "ssh-keyscan") {
		t.Errorf("kvm2 with another host key in known_hosts: %v, want a refusal that says to pin its keys:\n%s", err, out)
	}
	// The troubleshooting table's words, as an operator would meet them:
	// the server certificate names its host,
	boxes.mustRun("ps", `sed 's#qemu+tls://kvm1.example.internal/#qemu+tls://kvm2.example.internal/#' /etc/premiscale/config.yaml >misnamed-config.yaml`)
	if out, err := boxes.run("ps", "premiscale -c misnamed-config.yaml hosts check kvm1"); err == nil || !strings.Contains(out, "x509: certificate is valid for kvm1.example.internal, not kvm2.example.internal") {
		t.Errorf("kvm1's certificate under another name: %v\n%s", err, out)
	}
	// and `restrict` alone in authorized_keys refuses libvirtd's socket.
	boxes.mustRun("kvm2", `cp /home/premiscale/.ssh/authorized_keys keys.saved
sed -i 's/^restrict,port-forwarding /restrict /' /home/premiscale/.ssh/authorized_keys`)
	out, err = boxes.run("ps", "premiscale -c /etc/premiscale/config.yaml hosts check kvm2")
	boxes.mustRun("kvm2", `cat keys.saved >/home/premiscale/.ssh/authorized_keys`)
	if err == nil || !strings.Contains(out, "failed to connect to remote libvirt socket") {
		t.Errorf("kvm2 with restrict alone in authorized_keys: %v\n%s", err, out)
	}
}

// machineOf is the boxes that play the machine a block's first line
// names: the longest name it starts with.
func machineOf(role string) []string {
	best := ""
	for prefix := range guideMachines {
		if strings.HasPrefix(role, prefix) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best == "" {
		return nil
	}
	return guideMachines[best]
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func guideSkip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("PSTEST_REQUIRE_ALL") == "1" {
		t.Fatal(why)
	}
	t.Skip(fmt.Sprint(why, "; run through make test"))
}
