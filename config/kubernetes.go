package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Kubernetes says how the controller reaches the cluster its groups' VMs
// join, and what joining VMs are told about it.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; with InCluster false and no
	// Kubeconfig, Kubernetes is not used.
	Kubeconfig string `koanf:"kubeconfig" json:"kubeconfig,omitempty"`
	// Context selects a context of Kubeconfig; empty means its current one.
	Context string `koanf:"context" json:"context,omitempty"`
	// InCluster uses the pod's service account.
	InCluster bool `koanf:"inCluster" json:"inCluster,omitempty"`
	// APIServerEndpoint is host:port that kubeadm join dials.
	APIServerEndpoint string `koanf:"apiServerEndpoint" json:"apiServerEndpoint,omitempty"`
	// CACertHashes pin the cluster CA for kubeadm join ("sha256:<hex>").
	CACertHashes []string `koanf:"caCertHashes" json:"caCertHashes,omitempty"`
	// TokenTTL is the lifetime of each VM's bootstrap token.
	TokenTTL time.Duration `koanf:"tokenTTL" json:"tokenTTL"`
}

// Enabled reports whether a cluster is configured.
func (k Kubernetes) Enabled() bool { return k.InCluster || k.Kubeconfig != "" }

// How a group's VMs join Kubernetes.
const (
	// JoinNone: the VMs are not Kubernetes nodes.
	JoinNone = "none"
	// JoinKubeadm: PremiScale creates a bootstrap token per VM and a
	// NoCloud seed whose user-data runs kubeadm join.
	JoinKubeadm = "kubeadm"
	// JoinUserData: the seed carries the group's own user-data template.
	JoinUserData = "userData"
)

// What a drain that outlives drain.timeout does.
const (
	// DrainAbort uncordons the node and keeps the VM.
	DrainAbort = "abort"
	// DrainForce goes on to shut the VM down.
	DrainForce = "force"
)

// GroupKubernetes is how a group's VMs join the cluster and leave it.
type GroupKubernetes struct {
	// Join is JoinNone (default), JoinKubeadm or JoinUserData.
	Join string `koanf:"join" json:"join"`
	// NodeName is a Go template of the node name; fields .VM and .Group.
	NodeName string `koanf:"nodeName" json:"nodeName"`
	// Labels and Taints are registered by the kubelet with the node.
	Labels map[string]string `koanf:"labels" json:"labels,omitempty"`
	Taints []Taint           `koanf:"taints" json:"taints,omitempty"`
	// UserData is the cloud-init user-data template for JoinUserData (or
	// UserDataFile, read when the config loads); fields .VM, .Group,
	// .NodeName, .ProviderID.
	UserData     string `koanf:"userData" json:"userData,omitempty"`
	UserDataFile string `koanf:"userDataFile" json:"userDataFile,omitempty"`
	// ReadyTimeout bounds the wait for the node to be Ready; past it the VM
	// counts as failed and is replaced.
	ReadyTimeout time.Duration `koanf:"readyTimeout" json:"readyTimeout"`
	Drain        Drain         `koanf:"drain" json:"drain"`
}

// Taint is one node taint.
type Taint struct {
	Key    string `koanf:"key" json:"key"`
	Value  string `koanf:"value" json:"value,omitempty"`
	Effect string `koanf:"effect" json:"effect"`
}

// Drain is how a joined VM's node is emptied before the VM is destroyed.
type Drain struct {
	// Timeout bounds the drain; past it OnTimeout applies.
	Timeout time.Duration `koanf:"timeout" json:"timeout"`
	// GracePeriod is each pod's termination grace period; -1s means each
	// pod's own.
	GracePeriod        *time.Duration `koanf:"gracePeriod" json:"gracePeriod,omitempty"`
	IgnoreDaemonSets   *bool          `koanf:"ignoreDaemonSets" json:"ignoreDaemonSets,omitempty"`
	DeleteEmptyDirData bool           `koanf:"deleteEmptyDirData" json:"deleteEmptyDirData,omitempty"`
	// Force also deletes pods no controller manages.
	Force bool `koanf:"force" json:"force,omitempty"`
	// OnTimeout is DrainAbort (default) or DrainForce.
	OnTimeout string `koanf:"onTimeout" json:"onTimeout"`
}

func (v *validator) kubernetes(p string, k GroupKubernetes, kc Kubernetes) {
	v.oneOf(p+".join", k.Join, []string{JoinNone, JoinKubeadm, JoinUserData})
	if k.Join != JoinNone && !kc.Enabled() {
		v.add(p+".join", "%s needs controller.kubernetes (kubeconfig or inCluster)", k.Join)
	}
	if k.Join == JoinKubeadm {
		if kc.APIServerEndpoint == "" {
			v.add("controller.kubernetes.apiServerEndpoint", "must be set for kubeadm join (group %s)", strings.TrimSuffix(p, ".kubernetes"))
		}
		if len(kc.CACertHashes) == 0 {
			v.add("controller.kubernetes.caCertHashes", "must list the cluster CA's hash for kubeadm join (group %s)", strings.TrimSuffix(p, ".kubernetes"))
		}
	}
	if k.Join == JoinUserData && k.UserData == "" {
		v.add(p+".userData", "must be set (or userDataFile) for join userData")
	}
	if _, err := template.New("nodeName").Option("missingkey=error").Parse(k.NodeName); err != nil {
		v.add(p+".nodeName", "%v", err)
	}
	if k.UserData != "" {
		if _, err := template.New("userData").Option("missingkey=error").Parse(k.UserData); err != nil {
			v.add(p+".userData", "%v", err)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(k.Labels)) {
		if len(key) > 253 || !labelKeyRE.MatchString(key) {
			v.add(p+".labels", "invalid label key %q", key)
		}
		if !labelValueRE.MatchString(k.Labels[key]) {
			v.add(p+".labels."+key, "invalid label value %q", k.Labels[key])
		}
	}
	for i, t := range k.Taints {
		tp := fmt.Sprintf("%s.taints[%d]", p, i)
		if !labelKeyRE.MatchString(t.Key) {
			v.add(tp+".key", "invalid taint key %q", t.Key)
		}
		if !labelValueRE.MatchString(t.Value) {
			v.add(tp+".value", "invalid taint value %q", t.Value)
		}
		v.oneOf(tp+".effect", t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"})
	}
	if k.ReadyTimeout < time.Minute {
		v.add(p+".readyTimeout", "must be >= 1m, got %s", k.ReadyTimeout)
	}
	if k.Drain.Timeout < time.Second {
		v.add(p+".drain.timeout", "must be >= 1s, got %s", k.Drain.Timeout)
	}
	if g := k.Drain.GracePeriod; g != nil && *g < 0 && *g != -time.Second {
		v.add(p+".drain.gracePeriod", "must be >= 0s, or -1s for each pod's own, got %s", *g)
	}
	v.oneOf(p+".drain.onTimeout", k.Drain.OnTimeout, []string{DrainAbort, DrainForce})
}

// controllerKubernetes checks controller.kubernetes.
func (v *validator) controllerKubernetes(kc Kubernetes) {
	if kc.InCluster && kc.Kubeconfig != "" {
		v.add("controller.kubernetes", "set inCluster or kubeconfig, not both")
	}
	if kc.TokenTTL < time.Minute {
		v.add("controller.kubernetes.tokenTTL", "must be >= 1m, got %s", kc.TokenTTL)
	}
	for i, h := range kc.CACertHashes {
		if !caHashRE.MatchString(h) {
			v.add(fmt.Sprintf("controller.kubernetes.caCertHashes[%d]", i), "must be sha256:<64 hex digits>, got %q", h)
		}
	}
}

// RenderNodeName renders a node name template (.VM, .Group); empty means
// the VM's name.
func RenderNodeName(pattern, group, vm string) (string, error) {
	if pattern == "" {
		return vm, nil
	}
	t, err := template.New("nodeName").Option("missingkey=error").Parse(pattern)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{"VM": vm, "Group": group}); err != nil {
		return "", err
	}
	return b.String(), nil
}

var (
	caHashRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// labelKeyRE is a Kubernetes qualified name with an optional DNS prefix.
	labelKeyRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)
