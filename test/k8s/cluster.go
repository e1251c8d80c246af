// Package k8s runs a real Kubernetes control plane for the tests: etcd,
// kube-apiserver (RBAC, the Node authorizer, bootstrap-token
// authentication, real certificates on loopback), kube-controller-manager
// (service accounts, the disruption controller PodDisruptionBudgets need,
// the bootstrap signer and token cleaner, the CSR approver and signer) and
// kube-scheduler, all of the pinned upstream release, plus kwok, which plays
// the kubelet of every Node annotated kwok.x-k8s.io/node=fake (turns it
// Ready, keeps its lease, runs the pods bound to it without containers).
//
// The cluster is set up as kubeadm init leaves one: the cluster-info
// ConfigMap in kube-public readable anonymously, and the bindings that let
// a bootstrap token of kubeadm's default node-token group ask for a kubelet
// certificate that is approved and signed automatically. What is simulated
// is only the kubelet itself (kwok, and the stand-in in kubelet.go).
package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
)

// FakeNodeAnnotation marks a Node whose kubelet kwok simulates.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

// NodeBootstrapGroup is kubeadm's group of default node join tokens: a
// bootstrap token in it may read cluster-info and get a kubelet certificate.
const NodeBootstrapGroup = "system:bootstrappers:kubeadm:default-node-token"

// Cluster is a running control plane. Server is the API server's URL,
// Admin a client with cluster-admin rights (system:masters), Kubeconfig the
// path of the admin kubeconfig, CAHash kubeadm's discovery hash of the CA.
type Cluster struct {
	Dir        string
	Server     string
	Kubeconfig string
	CAHash     string
	CAPEM      []byte
	Admin      kubernetes.Interface
	Config     *rest.Config

	pki    *pki
	procs  []*proc
	binDir string
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// Dir returns the directory with bin/controlplane, bin/kwok and
// kwok/stages.yaml: PSTEST_K8S_DIR if set (test.sh sets it), else what
// test/k8s/build.sh builds or finds cached.
func Dir() (string, error) {
	if d := os.Getenv("PSTEST_K8S_DIR"); d != "" {
		return d, nil
	}
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "build.sh")
	out, err := exec.Command(script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s: %w\n%s", script, err, ee.Stderr)
		}
		return "", fmt.Errorf("%s: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start brings a cluster up in dir (which it fills with certificates,
// kubeconfigs, etcd's data and each component's log) and returns once the
// API server is ready, the controller-manager has made the default service
// account and the scheduler and kwok run. Everything it starts is stopped
// by Stop, or killed with the calling process (Pdeathsig).
func Start(ctx context.Context, dir string) (c *Cluster, err error) {
	bin, err := Dir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, binDir: bin}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if c.pki, err = newPKI(dir); err != nil {
		return nil, err
	}
	c.CAHash, c.CAPEM = c.pki.Hash, c.pki.CAPEM()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	if err := c.pki.issue("apiserver", "kube-apiserver", nil,
		"127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "10.96.0.1"); err != nil {
		return nil, err
	}
	if err := c.pki.serviceAccountKey(); err != nil {
		return nil, err
	}
	for name, user := range map[string][2]string{
		"admin":              {"kubernetes-admin", "system:masters"},
		"controller-manager": {"system:kube-controller-manager", ""},
		"scheduler":          {"system:kube-scheduler", ""},
	} {
		var orgs []string
		if user[1] != "" {
			orgs = []string{user[1]}
		}
		if err := c.pki.issue(name, user[0], orgs); err != nil {
			return nil, err
		}
		if err := c.writeKubeconfig(name); err != nil {
			return nil, err
		}
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, err
	}
	c.Config.QPS, c.Config.Burst = 100, 200
	if c.Admin, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}

	cp := filepath.Join(bin, "bin", "controlplane")
	p := c.pki.path
	if err := os.WriteFile(p("audit-policy.yaml"), []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	if err := c.start("etcd", cp, "etcd",
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		// The data is thrown away with the test run: no fsync.
		"--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return nil, err
	}
	if err := c.start("kube-apiserver", cp, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		// A service range that is never contacted: there is no kube-proxy.
		"--service-cluster-ip-range=10.96.0.0/16", "--endpoint-reconciler-type=none",
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true", "--allow-privileged=true", "--profiling=false",
		"--audit-policy-file="+p("audit-policy.yaml"), "--audit-log-path="+c.AuditLog(),
		"--audit-log-format=json", "--audit-log-mode=blocking"); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := c.kubeadmBootstrap(ctx); err != nil {
		return nil, fmt.Errorf("kubeadm-like bootstrap objects: %w", err)
	}
	if err := c.start("kube-controller-manager", cp, "kube-controller-manager",
		"--kubeconfig="+p("controller-manager.kubeconfig"),
		"--authentication-kubeconfig="+p("controller-manager.kubeconfig"),
		"--authorization-kubeconfig="+p("controller-manager.kubeconfig"),
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
		"--controllers=*,bootstrapsigner,tokencleaner", "--use-service-account-credentials=true",
		"--service-account-private-key-file="+p("sa.key"), "--root-ca-file="+p("ca.crt"),
		"--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key"),
		"--cluster-name=premiscale-test", "--profiling=false"); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler", cp, "kube-scheduler",
		"--kubeconfig="+p("scheduler.kubeconfig"),
		"--authentication-kubeconfig="+p("scheduler.kubeconfig"),
		"--authorization-kubeconfig="+p("scheduler.kubeconfig"),
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false", "--profiling=false"); err != nil {
		return nil, err
	}
	if err := c.start("kwok", filepath.Join(bin, "bin", "kwok"),
		"--kubeconfig="+c.Kubeconfig,
		"--config="+filepath.Join(bin, "kwok", "stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+FakeNodeAnnotation+"=fake",
		"--node-lease-duration-seconds=40",
		"--server-address=127.0.0.1:0"); err != nil {
		return nil, err
	}
	// Pods can be created once the controller-manager has made the
	// namespace's default service account.
	if err := poll(ctx, time.Minute, func() (bool, error) {
		_, err := c.Admin.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("controller-manager made no default service account: %w%s", err, c.logTail("kube-controller-manager"))
	}
	return c, nil
}

func (c *Cluster) writeKubeconfig(name string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["premiscale-test"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAPEM}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: c.pki.path(name + ".crt"), ClientKey: c.pki.path(name + ".key")}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "premiscale-test", AuthInfo: name}
	kc.CurrentContext = name
	return clientcmd.WriteToFile(*kc, c.pki.path(name+".kubeconfig"))
}

// TokenKubeconfig writes a kubeconfig that authenticates with a bearer
// token (a service account's, or a bootstrap token) and returns its path.
func (c *Cluster) TokenKubeconfig(name, token string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["premiscale-test"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAPEM}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "premiscale-test", AuthInfo: name}
	kc.CurrentContext = name
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}

// kubeadmBootstrap creates what kubeadm init's bootstrap-token phase does:
// cluster-info in kube-public (readable by anyone, signed per token by the
// bootstrap signer), and the bindings that let node join tokens ask for a
// kubelet client certificate that the CSR approver then approves.
func (c *Cluster) kubeadmBootstrap(ctx context.Context) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[""] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAPEM}
	info, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: string(info)},
	}
	if _, err := c.Admin.CoreV1().ConfigMaps(metav1.NamespacePublic).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	rbac := c.Admin.RbacV1()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:bootstrap-signer-clusterinfo", Namespace: metav1.NamespacePublic},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"},
			ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo},
		}},
	}
	if _, err := rbac.Roles(metav1.NamespacePublic).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: metav1.NamespacePublic},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:anonymous"}},
	}
	if _, err := rbac.RoleBindings(metav1.NamespacePublic).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for name, clusterRole := range map[string]string{
		"kubeadm:kubelet-bootstrap":                     "system:node-bootstrapper",
		"kubeadm:node-autoapprove-bootstrap":            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
		"kubeadm:node-autoapprove-certificate-rotation": "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
	} {
		group := NodeBootstrapGroup
		if strings.HasSuffix(name, "rotation") {
			group = "system:nodes"
		}
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}},
		}
		if _, err := rbac.ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

func (c *Cluster) start(name, path string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.Dir
	// Dies with the test binary even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	return poll(ctx, 90*time.Second, func() (bool, error) {
		for _, p := range c.procs {
			select {
			case <-p.done:
				return false, fmt.Errorf("%s exited: %s%s", p.name, p.cmd.ProcessState, c.logTail(p.name))
			default:
			}
		}
		body, err := c.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}

// Running reports the components that have exited, if any.
func (c *Cluster) Exited() []string {
	var out []string
	for _, p := range c.procs {
		select {
		case <-p.done:
			out = append(out, p.name+": "+p.cmd.ProcessState.String()+c.logTail(p.name))
		default:
		}
	}
	return out
}

// Stop stops every component, newest first: SIGTERM, then SIGKILL after
// ten seconds.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	c.procs = nil
}

func (c *Cluster) logTail(name string) string {
	b, err := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return ""
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "\n--- " + name + ".log (tail) ---\n" + string(b)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
