package k8s

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
