package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	"sigs.k8s.io/yaml"
)

// JoinRequest is what a VM's cloud-init user-data tells kubeadm join and
// the kubelet, as PremiScale's seed writes it.
type JoinRequest struct {
	Endpoint   string   // host:port of the API server
	Token      string   // id.secret
	CAHashes   []string // --discovery-token-ca-cert-hash
	NodeName   string
	ProviderID string
	Labels     map[string]string
	Taints     []corev1.Taint
	// DiscoveryTimeout bounds the wait for cluster-info to be signed for
	// the token (the bootstrap signer does it moments after the token is
	// created; kubeadm waits too); zero means 30 s.
	DiscoveryTimeout time.Duration
	// NotReady registers the Node without handing it to kwok: a kubelet
	// that joins, then never reports Ready (no CNI, a broken runtime).
	NotReady bool
}

// ParseUserData reads the kubeadm join command and the kubelet's extra
// arguments from a cloud-config PremiScale wrote.
func ParseUserData(userData string) (JoinRequest, error) {
	var doc struct {
		WriteFiles []struct {
			Path    string `json:"path"`
			Content string `json:"content"`
		} `json:"write_files"`
		RunCmd [][]string `json:"runcmd"`
	}
	if !strings.HasPrefix(userData, "#cloud-config\n") {
		return JoinRequest{}, errors.New("user-data is not a cloud-config")
	}
	if err := yaml.Unmarshal([]byte(userData), &doc); err != nil {
		return JoinRequest{}, fmt.Errorf("user-data: %w", err)
	}
	var r JoinRequest
	for _, cmd := range doc.RunCmd {
		if len(cmd) < 3 || cmd[0] != "kubeadm" || cmd[1] != "join" {
			continue
		}
		r.Endpoint = cmd[2]
		for i := 3; i+1 < len(cmd); i += 2 {
			switch cmd[i] {
			case "--token":
				r.Token = cmd[i+1]
			case "--discovery-token-ca-cert-hash":
				r.CAHashes = append(r.CAHashes, cmd[i+1])
			case "--node-name":
				r.NodeName = cmd[i+1]
			default:
				return JoinRequest{}, fmt.Errorf("kubeadm join: unexpected argument %q", cmd[i])
			}
		}
	}
	if r.Endpoint == "" || r.Token == "" || len(r.CAHashes) == 0 || r.NodeName == "" {
		return JoinRequest{}, fmt.Errorf("user-data has no complete kubeadm join: %+v", r)
	}
	for _, f := range doc.WriteFiles {
		if f.Path != "/etc/default/kubelet" {
			continue
		}
		args, ok := strings.CutPrefix(strings.TrimSpace(f.Content), "KUBELET_EXTRA_ARGS=")
		if !ok {
			return JoinRequest{}, fmt.Errorf("/etc/default/kubelet: %q", f.Content)
		}
		if u, err := strconv.Unquote(args); err == nil {
			args = u
		}
		for _, a := range strings.Fields(args) {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "--provider-id":
				r.ProviderID = v
			case "--node-labels":
				r.Labels = map[string]string{}
				for _, kv := range strings.Split(v, ",") {
					lk, lv, _ := strings.Cut(kv, "=")
					r.Labels[lk] = lv
				}
			case "--register-with-taints":
				for _, t := range strings.Split(v, ",") {
					kv, effect, _ := strings.Cut(t, ":")
					tk, tv, _ := strings.Cut(kv, "=")
					r.Taints = append(r.Taints, corev1.Taint{Key: tk, Value: tv, Effect: corev1.TaintEffect(effect)})
				}
			}
		}
	}
	return r, nil
}

// Join is the stand-in for kubeadm join and the kubelet's first start, done
// through the API as they do it:
//
//  1. discovery: read cluster-info from kube-public anonymously, check its
//     JWS signature for this token (the bootstrap signer writes one per
//     signing token) and the CA against the discovery hash;
//  2. TLS bootstrap: with the bootstrap token, ask for a kubelet client
//     certificate (a CSR the controller-manager approves and signs);
//  3. with that certificate, as system:node:<name>, register the Node with
//     the provider ID, labels and taints, annotated so that kwok plays its
//     kubelet from then on (Ready, lease, pods).
//
// A token that is expired, deleted or wrong fails at 1 or 2, as it would
// for kubeadm.
func (c *Cluster) Join(ctx context.Context, r JoinRequest) (*Kubelet, error) {
	id, secret, ok := strings.Cut(r.Token, ".")
	if !ok {
		return nil, errors.New("token is not id.secret")
	}
	// 1. Discovery, before the CA is trusted: TLS unverified, as kubeadm's
	// token discovery does, then the content checked by signature and hash.
	anon, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + r.Endpoint, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		return nil, err
	}
	wait := r.DiscoveryTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	var content, sig string
	for deadline := time.Now().Add(wait); ; {
		cm, err := anon.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("discovery: read cluster-info: %w", err)
		}
		content, sig = cm.Data[bootstrapapi.KubeConfigKey], cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id]
		if sig != "" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("discovery: cluster-info is not signed for token %s after %s (expired or deleted)", id, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if !jws.DetachedTokenIsValid(sig, content, id, secret) {
		return nil, fmt.Errorf("discovery: cluster-info signature does not match token %s", id)
	}
	kc, err := clientcmd.Load([]byte(content))
	if err != nil {
		return nil, fmt.Errorf("discovery: cluster-info kubeconfig: %w", err)
	}
	var caPEM []byte
	for _, cl := range kc.Clusters {
		caPEM = cl.CertificateAuthorityData
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return nil, errors.New("discovery: cluster-info holds no CA")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	if !slices.Contains(r.CAHashes, "sha256:"+hex.EncodeToString(sum[:])) {
		return nil, fmt.Errorf("discovery: CA hash sha256:%x is none of %v", sum, r.CAHashes)
	}
	trusted := rest.TLSClientConfig{CAData: caPEM}

	// 2. TLS bootstrap with the token.
	boot, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + r.Endpoint, BearerToken: r.Token, TLSClientConfig: trusted})
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrPEM, err := certutil.MakeCSR(key, &pkix.Name{CommonName: "system:node:" + r.NodeName, Organization: []string{"system:nodes"}}, nil, nil)
	if err != nil {
		return nil, err
	}
	name, uid, err := csr.RequestCertificateWithContext(ctx, boot, csrPEM, "", certificatesv1.KubeAPIServerClientKubeletSignerName, nil,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, key)
	if err != nil {
		return nil, fmt.Errorf("TLS bootstrap: request kubelet certificate: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	certPEM, err := csr.WaitForCertificate(wctx, boot, name, uid)
	if err != nil {
		return nil, fmt.Errorf("TLS bootstrap: kubelet certificate %s: %w", name, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}

	// 3. Register the Node as the node itself.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("kubelet certificate: %w", err)
	}
	trusted.CertData, trusted.KeyData = certPEM, keyPEM
	kubelet, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + r.Endpoint, TLSClientConfig: trusted})
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		corev1.LabelHostname: r.NodeName, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
	}
	for k, v := range r.Labels {
		labels[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.NodeName, Labels: labels},
		Spec:       corev1.NodeSpec{ProviderID: r.ProviderID, Taints: r.Taints},
	}
	if !r.NotReady {
		node.Annotations = map[string]string{FakeNodeAnnotation: "fake"}
	}
	node, err = kubelet.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &Kubelet{Node: node, Client: kubelet, Request: r}, nil
}

// Kubelet is a joined node's kubelet: its Node as registered, and a client
// with its credentials (system:node:NAME, limited by the Node authorizer
// and NodeRestriction as a real kubelet is).
type Kubelet struct {
	Node    *corev1.Node
	Client  kubernetes.Interface
	Request JoinRequest
}

// MirrorPod creates the mirror pod of a static pod named name in
// kube-system on the kubelet's node, as the kubelet does for each manifest
// in its staticPodPath: annotated kubernetes.io/config.mirror, owned by the
// Node (NodeRestriction requires both). kubectl drain never evicts one.
func (k *Kubelet) MirrorPod(ctx context.Context, name string) (*corev1.Pod, error) {
	hash := fmt.Sprintf("%x", sha256.Sum256([]byte(k.Node.Name+"/"+name)))[:16]
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-" + k.Node.Name, Namespace: metav1.NamespaceSystem,
			Annotations: map[string]string{
				corev1.MirrorPodAnnotationKey: hash, "kubernetes.io/config.hash": hash, "kubernetes.io/config.source": "file",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: k.Node.Name, UID: k.Node.UID, Controller: &yes,
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:    k.Node.Name,
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: name, Image: "registry.invalid/" + name + ":1"}},
		},
	}
	return k.Client.CoreV1().Pods(metav1.NamespaceSystem).Create(ctx, pod, metav1.CreateOptions{})
}
