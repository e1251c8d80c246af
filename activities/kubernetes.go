package activities

import (
	"context"
	"errors"
	"fmt"
	"github.com/premiscale/premiscale/internal/hostconn"
	"io"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	"k8s.io/kubectl/pkg/drain"
)

// Labels PremiScale puts on the bootstrap-token Secrets it creates.
const (
	LabelGroup = "premiscale.com/group"
	LabelVM    = "premiscale.com/vm"
)

// Error types of the Kubernetes activities.
const (
	// ErrTypeDrainTimeout: the drain did not finish within its timeout.
	ErrTypeDrainTimeout = "DrainTimeout"
	// ErrTypeNoKubernetes: a group needs Kubernetes, the worker has none.
	ErrTypeNoKubernetes = "NoKubernetes"
)

// Kubernetes holds the activities that talk to the cluster the groups' VMs
// join. Hosts is used by CreateSeedVolume, which writes a VM's NoCloud seed
// to libvirt: it is the one place where a join token is read, so the token
// never leaves the activity (it is neither an input nor a result, and so
// never enters workflow history).
type Kubernetes struct {
	// Client is nil when the controller has no cluster configured.
	Client kubernetes.Interface
	Hosts  *hostconn.Hosts
	// Catalog resolves groups and hosts by name (see Catalog).
	Catalog *Catalog
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// Members reads a group's members from its workflow: no Node is
	// touched unless it is a member's (see ownNode). Nil refuses every
	// Node.
	Members GroupMembership

	// nodes is one watch of the cluster's Nodes shared by every activity of
	// the worker, indexed by provider ID, started on first use: finding a
	// VM's node is then a map lookup, not a list of every node per VM per
	// poll. It runs for the worker process's lifetime.
	nodesOnce sync.Once
	nodes     cache.SharedIndexInformer
}

// byProviderID indexes the node cache.
const byProviderID = "providerID"

// nodeCacheWait bounds the wait for the node cache's first sync; past it
// an activity lists the nodes itself.
const nodeCacheWait = 10 * time.Second

func (k *Kubernetes) nodeCache(c kubernetes.Interface) cache.SharedIndexInformer {
	k.nodesOnce.Do(func() {
		f := informers.NewSharedInformerFactory(c, 0)
		inf := f.Core().V1().Nodes().Informer()
		if err := inf.AddIndexers(cache.Indexers{byProviderID: func(obj any) ([]string, error) {
			if n, ok := obj.(*corev1.Node); ok && n.Spec.ProviderID != "" {
				return []string{n.Spec.ProviderID}, nil
			}
			return nil, nil
		}}); err != nil {
			return // no cache: node() lists
		}
		f.Start(make(chan struct{}))
		k.nodes = inf
	})
	return k.nodes
}

func (k *Kubernetes) client() (kubernetes.Interface, error) {
	if k == nil || k.Client == nil {
		return nil, nonRetryable(ErrTypeNoKubernetes, "this worker has no Kubernetes cluster configured (controller.kubernetes)")
	}
	return k.Client, nil
}

func (k *Kubernetes) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// JoinTokenInput asks for the bootstrap token of one VM.
type JoinTokenInput struct {
	Group string `json:"group"`
	VM    string `json:"vm"`
	// Revision is the group's configuration revision the workflow holds.
	Revision string `json:"revision"`
}

// JoinTokenOutput is empty since tokens are made with the seed (see
// CreateJoinToken); TokenID stays for the histories that recorded one.
type JoinTokenOutput struct {
	TokenID string `json:"tokenId"`
}

// CreateJoinToken checks, before a kubeadm seed is written, that the group
// is one the worker's catalog has, that the VM is one of its members'
// names, and that it joins by kubeadm. It creates nothing: the token is
// made by CreateSeedVolume, the only place that can use its secret half,
// because PremiScale may only create Secrets in kube-system, never read,
// list or delete them (see newJoinToken). Idempotent and side-effect free.
// Its name and types are kept for the group workflows that schedule it.
func (k *Kubernetes) CreateJoinToken(ctx context.Context, in JoinTokenInput) (JoinTokenOutput, error) {
	g, err := k.Catalog.Member(in.Group, in.Revision, in.VM)
	if err != nil {
		return JoinTokenOutput{}, err
	}
	if g.Kubernetes.Join != joinKubeadm {
		return JoinTokenOutput{}, nonRetryable(ErrTypeInvalidConfig, "group %s does not join by kubeadm; no join token", in.Group)
	}
	if _, err := k.client(); err != nil {
		return JoinTokenOutput{}, err
	}
	return JoinTokenOutput{}, nil
}

// newJoinToken creates a kubeadm bootstrap token for the VM: a Secret
// bootstrap-token-<id> in kube-system, usable for authentication and
// signing, in kubeadm's default node-token group, labelled with the group
// and VM, expiring after the worker's controller.kubernetes.tokenTTL. It
// returns the whole token "<id>.<secret>", which must not leave the
// activity.
//
// Create is the only verb PremiScale has on Secrets: list, get or delete
// in kube-system would reach every Secret there (RBAC cannot narrow them
// to names not known in advance), service-account keys of other
// controllers and Helm release payloads included. So a token is never
// looked up, reused or deleted early: each call makes a fresh one (a
// retried seed leaves the previous token unused), and every token ends at
// its expiry, when the controller-manager's token cleaner deletes it.
func (k *Kubernetes) newJoinToken(ctx context.Context, group, vm string) (string, error) {
	c, err := k.client()
	if err != nil {
		return "", err
	}
	token, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return "", fmt.Errorf("generate join token: %w", err)
	}
	id, secret, ok := cutToken(token)
	if !ok {
		return "", errors.New("generated join token is malformed")
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      bootstrapapi.BootstrapTokenSecretPrefix + id,
			Namespace: metav1.NamespaceSystem,
			Labels:    map[string]string{LabelGroup: group, LabelVM: vm},
		},
		Type: bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenDescriptionKey:      "PremiScale join token of " + vm,
			bootstrapapi.BootstrapTokenIDKey:               id,
			bootstrapapi.BootstrapTokenSecretKey:           secret,
			bootstrapapi.BootstrapTokenExpirationKey:       k.now().Add(k.Catalog.Kubernetes().TokenTTL).UTC().Format(time.RFC3339),
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      "system:bootstrappers:kubeadm:default-node-token",
		},
	}
	if _, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create join token of %s: %w", vm, err)
	}
	return token, nil
}

func cutToken(token string) (id, secret string, ok bool) {
	m := bootstraputil.BootstrapTokenRegexp.FindStringSubmatch(token)
	if len(m) != 3 {
		return "", "", false
	}
	return m[1], m[2], true
}

// DeleteJoinTokensInput names the VM whose tokens go.
type DeleteJoinTokensInput struct {
	Group string `json:"group"`
	VM    string `json:"vm"`
}

// DeleteJoinTokens does nothing: join tokens are create-only and expire
// after tokenTTL (see newJoinToken), because deleting one early would need
// the right to delete every Secret in kube-system. It stays registered for
// the workflows that schedule it once a node is Ready or forgotten.
func (k *Kubernetes) DeleteJoinTokens(ctx context.Context, in DeleteJoinTokensInput) error {
	return nil
}

// NodeRef finds a node by its provider ID (premiscale://<group>/<uuid>).
type NodeRef struct {
	ProviderID string `json:"providerId"`
}

// NodeStatusOutput is what the cluster says about a VM's node.
type NodeStatusOutput struct {
	Name   string `json:"name,omitempty"`
	Exists bool   `json:"exists"`
	Ready  bool   `json:"ready"`
}

// NodeStatus reports whether the node with the provider ID exists and is
// Ready. Read-only, so always safe to retry.
func (k *Kubernetes) NodeStatus(ctx context.Context, in NodeRef) (NodeStatusOutput, error) {
	defer keepAlive(ctx)()
	node, err := k.node(ctx, in.ProviderID)
	if err != nil || node == nil {
		return NodeStatusOutput{}, err
	}
	out := NodeStatusOutput{Name: node.Name, Exists: true}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			out.Ready = true
		}
	}
	return out, nil
}

// node returns the node with the provider ID, or nil: from the shared
// node cache once it has synced, else by listing the nodes.
func (k *Kubernetes) node(ctx context.Context, providerID string) (*corev1.Node, error) {
	c, err := k.client()
	if err != nil {
		return nil, err
	}
	if inf := k.nodeCache(c); inf != nil {
		wctx, cancel := context.WithTimeout(ctx, nodeCacheWait)
		synced := cache.WaitForCacheSync(wctx.Done(), inf.HasSynced)
		cancel()
		if synced {
			objs, err := inf.GetIndexer().ByIndex(byProviderID, providerID)
			if err == nil {
				for _, o := range objs {
					if n, ok := o.(*corev1.Node); ok {
						return n.DeepCopy(), nil
					}
				}
				return nil, nil
			}
		}
	}
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for i := range nodes.Items {
		if nodes.Items[i].Spec.ProviderID == providerID {
			return &nodes.Items[i], nil
		}
	}
	return nil, nil
}

// DrainInput says how to drain a VM's node.
type DrainInput struct {
	ProviderID string        `json:"providerId"`
	Timeout    time.Duration `json:"timeout"`
	// GracePeriodSeconds is each pod's termination grace; -1 keeps the pod's own.
	GracePeriodSeconds int  `json:"gracePeriodSeconds"`
	IgnoreDaemonSets   bool `json:"ignoreDaemonSets"`
	DeleteEmptyDirData bool `json:"deleteEmptyDirData"`
	Force              bool `json:"force"`
	// EvictRetryDelay is the wait before retrying an eviction a
	// PodDisruptionBudget refused; zero means 5 s.
	EvictRetryDelay time.Duration `json:"evictRetryDelay,omitempty"`
}

// DrainOutput reports what the drain did.
type DrainOutput struct {
	Node    string `json:"node,omitempty"`
	Evicted int    `json:"evicted"`
}

// DrainNode cordons the VM's node and evicts its pods with kubectl's drain
// library (eviction API, so PodDisruptionBudgets are respected; a refused
// eviction is retried after EvictRetryDelay), heartbeating while it waits.
// A node that does not exist is success (nothing to drain). Past Timeout it
// fails without retry (ErrTypeDrainTimeout), leaving the node cordoned; the
// caller decides whether to uncordon or go on. Idempotent: draining a
// drained node does nothing. Only a member's Node (ownNode): the drain
// options are the caller's, so that check comes first.
func (k *Kubernetes) DrainNode(ctx context.Context, in DrainInput) (DrainOutput, error) {
	defer keepAlive(ctx)()
	c, err := k.client()
	if err != nil {
		return DrainOutput{}, err
	}
	if err := k.ownNode(ctx, in.ProviderID); err != nil {
		return DrainOutput{}, err
	}
	node, err := k.node(ctx, in.ProviderID)
	if err != nil || node == nil {
		return DrainOutput{}, err
	}
	retry := in.EvictRetryDelay
	if retry <= 0 {
		retry = 5 * time.Second
	}
	out := DrainOutput{Node: node.Name}
	// The drain's own deadline, not the library's Timeout: whether it ran
	// out is then a fact of this context, not a guess from error text (an
	// API server's "request timed out" is an ordinary, retried error).
	dctx := ctx
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, in.Timeout)
		defer cancel()
	}
	// The library reports a refused eviction (a PodDisruptionBudget, most
	// often) only as a line on ErrOut before it retries; the last one says
	// why a drain that runs out of time did not finish.
	refusal := &lastLine{}
	h := &drain.Helper{
		Ctx:                  dctx,
		Client:               c,
		Force:                in.Force,
		GracePeriodSeconds:   in.GracePeriodSeconds,
		IgnoreAllDaemonSets:  in.IgnoreDaemonSets,
		DeleteEmptyDirData:   in.DeleteEmptyDirData,
		EvictErrorRetryDelay: retry,
		Out:                  io.Discard,
		ErrOut:               refusal,
		OnPodDeletionOrEvictionFinished: func(*corev1.Pod, bool, error) {
			out.Evicted++
			activity.RecordHeartbeat(ctx, out.Evicted)
		},
	}
	if err := drain.RunCordonOrUncordon(h, node, true); err != nil {
		return out, fmt.Errorf("cordon node %s: %w", node.Name, err)
	}
	if err := drain.RunNodeDrain(h, node.Name); err != nil {
		if ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
			why := refusal.String()
			if why == "" {
				why = err.Error()
			}
			return out, nonRetryable(ErrTypeDrainTimeout, "drain node %s: not done within %s: %s", node.Name, in.Timeout, why)
		}
		return out, fmt.Errorf("drain node %s: %w", node.Name, err)
	}
	return out, nil
}

// UncordonNode makes the VM's node schedulable again (after an aborted
// drain, or as a warm VM enters its group). A missing node is success.
func (k *Kubernetes) UncordonNode(ctx context.Context, in NodeRef) error {
	return k.cordon(ctx, in, false)
}

// CordonNode makes the VM's node unschedulable without evicting anything:
// a warm VM's node stays so while it waits in the pool. A missing node is
// success; cordoning a cordoned node does nothing.
func (k *Kubernetes) CordonNode(ctx context.Context, in NodeRef) error {
	return k.cordon(ctx, in, true)
}

func (k *Kubernetes) cordon(ctx context.Context, in NodeRef, on bool) error {
	defer keepAlive(ctx)()
	c, err := k.client()
	if err != nil {
		return err
	}
	if err := k.ownNode(ctx, in.ProviderID); err != nil {
		return err
	}
	node, err := k.node(ctx, in.ProviderID)
	if err != nil || node == nil {
		return err
	}
	h := &drain.Helper{Ctx: ctx, Client: c, Out: io.Discard, ErrOut: io.Discard}
	if err := drain.RunCordonOrUncordon(h, node, on); err != nil {
		verb := "uncordon"
		if on {
			verb = "cordon"
		}
		return fmt.Errorf("%s node %s: %w", verb, node.Name, err)
	}
	return nil
}

// DeleteNode deletes the VM's Node object. Idempotent: a missing node is
// success. Only a member's Node (ownNode).
func (k *Kubernetes) DeleteNode(ctx context.Context, in NodeRef) error {
	defer keepAlive(ctx)()
	c, err := k.client()
	if err != nil {
		return err
	}
	if err := k.ownNode(ctx, in.ProviderID); err != nil {
		return err
	}
	node, err := k.node(ctx, in.ProviderID)
	if err != nil || node == nil {
		return err
	}
	if err := c.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", node.Name, err)
	}
	return nil
}

// PodCountsInput lists the nodes to count pods on.
type PodCountsInput struct {
	ProviderIDs []string `json:"providerIds"`
}

// PodCountsOutput maps provider IDs to their nodes' pods that a drain would
// evict (all but DaemonSet and mirror pods); a node that does not exist
// counts 0.
type PodCountsOutput struct {
	Pods map[string]int `json:"pods"`
}

// PodCounts counts the evictable pods on each VM's node, for leastPods
// scale-in. Read-only; only members' Nodes (ownNode), or it fails.
func (k *Kubernetes) PodCounts(ctx context.Context, in PodCountsInput) (PodCountsOutput, error) {
	defer keepAlive(ctx)()
	c, err := k.client()
	if err != nil {
		return PodCountsOutput{}, err
	}
	members := map[string][]string{}
	for _, id := range in.ProviderIDs {
		if err := k.ownNodeIn(ctx, id, members); err != nil {
			return PodCountsOutput{}, err
		}
	}
	out := PodCountsOutput{Pods: map[string]int{}}
	for _, id := range in.ProviderIDs {
		out.Pods[id] = 0
		node, err := k.node(ctx, id)
		if err != nil {
			return PodCountsOutput{}, err
		}
		if node == nil {
			continue
		}
		// Only this node's pods, as kubectl drain lists them.
		pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
			FieldSelector: fields.SelectorFromSet(fields.Set{"spec.nodeName": node.Name}).String(),
		})
		if err != nil {
			return PodCountsOutput{}, fmt.Errorf("list pods of node %s: %w", node.Name, err)
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != node.Name || isDaemonOrMirror(p) || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			out.Pods[id]++
		}
	}
	return out, nil
}

func isDaemonOrMirror(p corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

// lastLine is an io.Writer that keeps the last non-empty line written to
// it (safe for the drain library's concurrent evictions).
type lastLine struct {
	mu   sync.Mutex
	line string
}

func (l *lastLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range strings.Split(string(p), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			l.line = s
		}
	}
	return len(p), nil
}

func (l *lastLine) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.line
}
