package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Image is a container image unpacked on this machine: its root
// filesystem (Root, used read-only as the lower layer of each container's
// overlay, as a container runtime's snapshotter does) and its OCI config.
type Image struct {
	Root       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// User is the config's user, uid:gid.
	User string
}

// defaultPath is the PATH a container runtime (containerd) gives a
// container whose image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PodProcess is the first container of a pod run as a process on this
// machine the way a kubelet would start it (see StartPod).
type PodProcess struct {
	Cmd *exec.Cmd
	// Env is the container's environment, as the process got it.
	Env []string
	// Dir holds the pod's volumes.
	Dir string

	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// Write collects the process's output.
func (p *PodProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what the process has printed so far.
func (p *PodProcess) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Exited reports whether the process ended, and how.
func (p *PodProcess) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, as the kubelet does, and SIGKILL after grace.
func (p *PodProcess) Stop(grace time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	return os.RemoveAll(p.Dir)
}

// ServiceLinkEnv returns the variables a kubelet injects into a container
// of a pod in namespace: for the master Service (default/kubernetes)
// always, and with links on for every Service of the namespace, computed
// by the kubelet's own code of the pinned release (controlplane envvars).
func (c *Cluster) ServiceLinkEnv(ctx context.Context, namespace string, links bool) ([]string, error) {
	var list corev1.ServiceList
	master, err := c.Admin.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("master service: %w", err)
	}
	list.Items = append(list.Items, *master)
	if links {
		svcs, err := c.Admin.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, s := range svcs.Items {
			if namespace == metav1.NamespaceDefault && s.Name == "kubernetes" {
				continue
			}
			list.Items = append(list.Items, s)
		}
	}
	b, err := json.Marshal(&list)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "bin", "controlplane"), "envvars")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("controlplane envvars: %w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("controlplane envvars: %w", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// StartPod runs pod's first container (the pod as the API server holds it,
// after admission added its service-account volume) as a process here, as
// a kubelet and container runtime would start it:
//   - its root: the image's filesystem under an overlay of its own, with
//     /proc, a minimal /dev, /etc/hosts, /etc/hostname and
//     /etc/resolv.conf, read-only if the container asks for it;
//   - its environment: the image's, then the service links (links forces
//     them on whatever the pod says, as a kubelet of a pod that left them
//     on would), then envFrom and env;
//   - its volumes: ConfigMaps, Secrets and projected service-account
//     tokens read from the API server, emptyDirs and claims as fresh
//     directories, group-owned by fsGroup, mounted at their mountPaths
//     (subPath, readOnly);
//   - a network namespace of its own (loopback only), its user, group and
//     fsGroup, no capabilities, no new privileges;
//   - the image's entrypoint with the container's args.
//
// The process runs through the calling test binary's PodInit (which
// TestMain must call first): it mounts, chroots, drops to the pod's user
// and execs the entrypoint, so its PID is the container's.
func (c *Cluster) StartPod(ctx context.Context, pod *corev1.Pod, img Image, links bool) (*PodProcess, error) {
	ctr := pod.Spec.Containers[0]
	dir, err := os.MkdirTemp("", "pod-"+pod.Name+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	p := &PodProcess{Dir: dir, done: make(chan struct{})}
	fail := func(err error) (*PodProcess, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}

	// Environment, later entries winning.
	env := map[string]string{}
	var order []string
	set := func(kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	if !slices.ContainsFunc(img.Env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		set(defaultPath)
	}
	for _, kv := range img.Env {
		set(kv)
	}
	set("HOSTNAME=" + pod.Name)
	sl, err := c.ServiceLinkEnv(ctx, pod.Namespace, links)
	if err != nil {
		return fail(err)
	}
	for _, kv := range sl {
		set(kv)
	}
	for _, ef := range ctr.EnvFrom {
		data, err := c.envSource(ctx, pod.Namespace, ef)
		if err != nil {
			return fail(err)
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			set(ef.Prefix + k + "=" + data[k])
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil {
			v, err := c.envValueFrom(ctx, pod, e.ValueFrom)
			if err != nil {
				return fail(fmt.Errorf("env %s: %w", e.Name, err))
			}
			set(e.Name + "=" + v)
			continue
		}
		set(e.Name + "=" + e.Value)
	}
	for _, k := range order {
		p.Env = append(p.Env, k+"="+env[k])
	}

	// User and groups: the image's, then the pod's, then the container's.
	spec := podInit{Env: p.Env}
	if u, g, ok := strings.Cut(img.User, ":"); ok {
		spec.UID, _ = strconv.Atoi(u)
		spec.GID, _ = strconv.Atoi(g)
	}
	fsGroup := int64(-1)
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			spec.UID = int(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			spec.GID = int(*sc.RunAsGroup)
		}
		if sc.FSGroup != nil {
			fsGroup = *sc.FSGroup
			spec.Groups = append(spec.Groups, int(*sc.FSGroup))
		}
		for _, g := range sc.SupplementalGroups {
			spec.Groups = append(spec.Groups, int(g))
		}
	}
	if sc := ctr.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			spec.UID = int(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			spec.GID = int(*sc.RunAsGroup)
		}
		spec.ReadOnlyRoot = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	}

	// Volumes, then the mounts in the order of their paths.
	vols := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		path := filepath.Join(dir, "volumes", v.Name)
		if err := c.fillVolume(ctx, pod, v, path, fsGroup); err != nil {
			return fail(fmt.Errorf("volume %s: %w", v.Name, err))
		}
		vols[v.Name] = path
	}
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fail(err)
	}
	for name, body := range map[string]string{
		"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"hostname": pod.Name + "\n",
	} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			return fail(err)
		}
		spec.Mounts = append(spec.Mounts, podMount{Source: filepath.Join(etc, name), Target: "/etc/" + name})
	}
	if exists("/etc/resolv.conf") {
		spec.Mounts = append(spec.Mounts, podMount{Source: "/etc/resolv.conf", Target: "/etc/resolv.conf", ReadOnly: true})
	}
	mounts := append([]corev1.VolumeMount(nil), ctr.VolumeMounts...)
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i].MountPath) < len(mounts[j].MountPath) })
	for _, m := range mounts {
		src, ok := vols[m.Name]
		if !ok {
			return fail(fmt.Errorf("volumeMount %s: no such volume", m.Name))
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
		}
		spec.Mounts = append(spec.Mounts, podMount{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}

	spec.Image = img.Root
	spec.Root = filepath.Join(dir, "rootfs")
	spec.WorkDir = img.WorkingDir
	if ctr.WorkingDir != "" {
		spec.WorkDir = ctr.WorkingDir
	}
	spec.Argv = img.Entrypoint
	if len(ctr.Command) > 0 {
		spec.Argv = ctr.Command
	}
	if len(ctr.Args) > 0 {
		spec.Argv = append(slices.Clone(spec.Argv), ctr.Args...)
	} else if len(ctr.Command) == 0 {
		spec.Argv = append(slices.Clone(spec.Argv), img.Cmd...)
	}
	if len(spec.Argv) == 0 {
		return fail(errors.New("no entrypoint, command or args"))
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fail(err)
	}
	specFile := filepath.Join(dir, "init.json")
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		return fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	p.Cmd = exec.Command(self)
	p.Cmd.Env = []string{podInitEnv + "=" + specFile, defaultPath}
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:    syscall.SIGKILL,
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS,
	}
	if err := p.Cmd.Start(); err != nil {
		return fail(err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	return p, nil
}

// podInitEnv names the file with a podInit; a test binary started with it
// set is the container's init (PodInit).
const podInitEnv = "PSTEST_POD_INIT"

// A test binary started with podProbeEnv set makes one HTTP GET of that URL
// within podProbeTimeoutEnv seconds, as a kubelet's httpGet probe does, and
// exits 0 on 200-399.
const (
	podProbeEnv        = "PSTEST_POD_PROBE"
	podProbeTimeoutEnv = "PSTEST_POD_PROBE_TIMEOUT"
)

func probeGet(url, timeout string) int {
	secs, err := strconv.Atoi(timeout)
	if err != nil || secs <= 0 {
		secs = 1
	}
	c := &http.Client{Timeout: time.Duration(secs) * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	os.Stdout.Write(body)
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

// podInit is what the init does, in order: mount the overlay root and
// the mounts, chroot, drop to the user, exec.
type podInit struct {
	Image, Root  string
	Mounts       []podMount
	ReadOnlyRoot bool
	WorkDir      string
	UID, GID     int
	Groups       []int
	Argv, Env    []string
}

type podMount struct {
	Source, Target string
	ReadOnly       bool
}

// PodInit is the container init of StartPod: TestMain calls it first. It
// returns at once unless this process was started as one; then it never
// returns (it execs the container's entrypoint, or exits 127 saying why).
func PodInit() {
	if url := os.Getenv(podProbeEnv); url != "" {
		os.Exit(probeGet(url, os.Getenv(podProbeTimeoutEnv)))
	}
	file := os.Getenv(podInitEnv)
	if file == "" {
		return
	}
	if err := podInitRun(file); err != nil {
		fmt.Fprintln(os.Stderr, "pod init:", err)
		os.Exit(127)
	}
}

func podInitRun(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var s podInit
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	// Unshareflags gave this process its own mount, network and UTS
	// namespaces: nothing mounted here is seen outside.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("loopback up: %v: %s", err, out)
	}
	if err := syscall.Sethostname([]byte(strings.TrimSpace(hostnameOf(s)))); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	upper, work, root := filepath.Join(s.Root, "upper"), filepath.Join(s.Root, "work"), filepath.Join(s.Root, "merged")
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount("overlay", root, "overlay", 0, "lowerdir="+s.Image+",upperdir="+upper+",workdir="+work); err != nil {
		return fmt.Errorf("overlay root: %w", err)
	}
	in := func(p string) string { return filepath.Join(root, p) }
	if err := os.MkdirAll(in("proc"), 0o555); err != nil {
		return err
	}
	if err := syscall.Mount("proc", in("proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("proc: %w", err)
	}
	if err := os.MkdirAll(in("dev"), 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", in("dev"), "tmpfs", syscall.MS_NOSUID, "mode=755"); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		s.Mounts = append([]podMount{{Source: "/dev/" + d, Target: "/dev/" + d}}, s.Mounts...)
	}
	for _, m := range s.Mounts {
		target := in(m.Target)
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
		if fi.IsDir() {
			err = os.MkdirAll(target, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil && !exists(target) {
			err = os.WriteFile(target, nil, 0o644)
		}
		if err != nil {
			return fmt.Errorf("mountpoint %s: %w", m.Target, err)
		}
		if err := syscall.Mount(m.Source, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
		if m.ReadOnly {
			if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("mount %s read-only: %w", m.Target, err)
			}
		}
	}
	if s.ReadOnlyRoot {
		if err := syscall.Mount("", root, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("root read-only: %w", err)
		}
	}
	if err := syscall.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if s.WorkDir != "" {
		if err := os.Chdir(s.WorkDir); err != nil {
			return fmt.Errorf("workingDir: %w", err)
		}
	}
	groups := s.Groups
	if len(groups) == 0 {
		groups = []int{s.GID}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("groups: %w", err)
	}
	if err := syscall.Setgid(s.GID); err != nil {
		return fmt.Errorf("gid: %w", err)
	}
	// From root to another user: every capability goes with it.
	if err := syscall.Setuid(s.UID); err != nil {
		return fmt.Errorf("uid: %w", err)
	}
	const prSetNoNewPrivs = 38
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	return syscall.Exec(s.Argv[0], s.Argv, s.Env)
}

func hostnameOf(s podInit) string {
	for _, kv := range s.Env {
		if h, ok := strings.CutPrefix(kv, "HOSTNAME="); ok {
			return h
		}
	}
	return "pod"
}

// Probe runs an httpGet probe of the container the way the kubelet does:
// a GET of the path on the container's port (a name resolved by its
// ports) in the pod's network, within the probe's timeoutSeconds; 200-399
// is success. It returns the body.
func (p *PodProcess) Probe(ctx context.Context, ctr corev1.Container, probe *corev1.Probe) (string, error) {
	if probe == nil || probe.HTTPGet == nil {
		return "", errors.New("not an httpGet probe")
	}
	port := probe.HTTPGet.Port.IntValue()
	if port == 0 {
		for _, cp := range ctr.Ports {
			if cp.Name == probe.HTTPGet.Port.String() {
				port = int(cp.ContainerPort)
			}
		}
	}
	if port == 0 {
		return "", fmt.Errorf("probe port %s: no such container port", probe.HTTPGet.Port.String())
	}
	timeout := probe.TimeoutSeconds
	if timeout == 0 {
		timeout = 1
	}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.HTTPGet.Path)
	// The pod's IP is its network namespace's loopback here: this test
	// binary, entered into that namespace, makes the GET (PodInit).
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/proc/"+strconv.Itoa(p.Cmd.Process.Pid)+"/ns/net", "--", self)
	cmd.Env = []string{podProbeEnv + "=" + url, podProbeTimeoutEnv + "=" + strconv.Itoa(int(timeout))}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("GET %s after %s: %v: %s", url, time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// fillVolume writes volume v of pod into path as the kubelet would.
func (c *Cluster) fillVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume, path string, fsGroup int64) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	chgrp := func(p string, mode os.FileMode) error {
		if fsGroup >= 0 {
			if err := os.Chown(p, 0, int(fsGroup)); err != nil {
				return err
			}
		}
		return os.Chmod(p, mode)
	}
	write := func(name string, data []byte, mode *int32, defaultMode *int32) error {
		m := os.FileMode(0o644)
		if defaultMode != nil {
			m = os.FileMode(*defaultMode)
		}
		if mode != nil {
			m = os.FileMode(*mode)
		}
		if fsGroup >= 0 {
			m |= 0o040 // the kubelet makes files group-readable for fsGroup
		}
		f := filepath.Join(path, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return err
		}
		return chgrp(f, m)
	}
	project := func(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32) error {
		if len(items) == 0 {
			for k, d := range data {
				if err := write(k, d, nil, defaultMode); err != nil {
					return err
				}
			}
			return nil
		}
		for _, it := range items {
			d, ok := data[it.Key]
			if !ok {
				return fmt.Errorf("no key %s", it.Key)
			}
			if err := write(it.Path, d, it.Mode, defaultMode); err != nil {
				return err
			}
		}
		return nil
	}
	cmData := func(name string) (map[string][]byte, error) {
		cm, err := c.Admin.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		data := map[string][]byte{}
		for k, d := range cm.Data {
			data[k] = []byte(d)
		}
		for k, d := range cm.BinaryData {
			data[k] = d
		}
		return data, nil
	}
	secretData := func(name string) (map[string][]byte, error) {
		s, err := c.Admin.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return s.Data, nil
	}
	switch {
	case v.EmptyDir != nil:
		return chgrp(path, 0o777)
	case v.PersistentVolumeClaim != nil:
		// A fresh volume, given to fsGroup as the kubelet does.
		return chgrp(path, 0o775|os.ModeSetgid)
	case v.ConfigMap != nil:
		data, err := cmData(v.ConfigMap.Name)
		if err != nil {
			return err
		}
		return project(data, v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		data, err := secretData(v.Secret.SecretName)
		if err != nil {
			return err
		}
		return project(data, v.Secret.Items, v.Secret.DefaultMode)
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			var err error
			switch {
			case src.ServiceAccountToken != nil:
				sa := pod.Spec.ServiceAccountName
				exp := int64(3600)
				if src.ServiceAccountToken.ExpirationSeconds != nil {
					exp = *src.ServiceAccountToken.ExpirationSeconds
				}
				req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
					ExpirationSeconds: &exp,
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				}}
				if a := src.ServiceAccountToken.Audience; a != "" {
					req.Spec.Audiences = []string{a}
				}
				var tok *authenticationv1.TokenRequest
				if tok, err = c.Admin.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{}); err == nil {
					err = write(src.ServiceAccountToken.Path, []byte(tok.Status.Token), nil, v.Projected.DefaultMode)
				}
			case src.ConfigMap != nil:
				var data map[string][]byte
				if data, err = cmData(src.ConfigMap.Name); err == nil {
					err = project(data, src.ConfigMap.Items, v.Projected.DefaultMode)
				}
			case src.Secret != nil:
				var data map[string][]byte
				if data, err = secretData(src.Secret.Name); err == nil {
					err = project(data, src.Secret.Items, v.Projected.DefaultMode)
				}
			case src.DownwardAPI != nil:
				for _, it := range src.DownwardAPI.Items {
					if it.FieldRef == nil {
						return fmt.Errorf("downwardAPI %s: only fieldRef is supported", it.Path)
					}
					var val string
					if val, err = podField(pod, it.FieldRef.FieldPath); err == nil {
						err = write(it.Path, []byte(val), it.Mode, v.Projected.DefaultMode)
					}
					if err != nil {
						break
					}
				}
			default:
				return fmt.Errorf("projected source %+v not supported by the stand-in", src)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("volume source not supported by the stand-in: %+v", v.VolumeSource)
}

func (c *Cluster) envSource(ctx context.Context, ns string, ef corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case ef.ConfigMapRef != nil:
		cm, err := c.Admin.CoreV1().ConfigMaps(ns).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		maps.Copy(out, cm.Data)
	case ef.SecretRef != nil:
		s, err := c.Admin.CoreV1().Secrets(ns).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	}
	return out, nil
}

func (c *Cluster) envValueFrom(ctx context.Context, pod *corev1.Pod, from *corev1.EnvVarSource) (string, error) {
	switch {
	case from.FieldRef != nil:
		return podField(pod, from.FieldRef.FieldPath)
	case from.SecretKeyRef != nil:
		s, err := c.Admin.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(s.Data[from.SecretKeyRef.Key]), nil
	case from.ConfigMapKeyRef != nil:
		cm, err := c.Admin.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return cm.Data[from.ConfigMapKeyRef.Key], nil
	}
	return "", fmt.Errorf("valueFrom %+v not supported by the stand-in", from)
}

func podField(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.name":
		return pod.Name, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	}
	return "", fmt.Errorf("fieldRef %s not supported by the stand-in", path)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

var _ io.Writer = (*PodProcess)(nil)
