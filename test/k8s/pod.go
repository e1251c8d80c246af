package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

var _ io.Writer = (*PodProcess)(nil)
