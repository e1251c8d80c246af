package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/template"

	"github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/kdomanski/iso9660"
	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/internal/hostconn"
)

// SeedLabel is the volume label cloud-init's NoCloud datasource looks for.
const SeedLabel = "cidata"

// SeedVolumeName is the name of the NoCloud seed volume of the VM named vm.
func SeedVolumeName(vm string) string { return VolumePrefix + vm + ".seed.iso" }

// Join modes a seed is built for (as config.Join*).
const (
	joinKubeadm  = "kubeadm"
	joinUserData = "userData"
)

// Taint is one node taint, registered by the kubelet.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// SeedInput asks for the NoCloud seed of one VM of a group. It holds no
// secret and no content: what the seed says (join mode, node name, labels,
// taints, user-data, API server) comes from the worker's catalog, and the
// kubeadm token is created inside the activity and never leaves it.
type SeedInput struct {
	Host  HostRef `json:"host"`
	Group string  `json:"group"`
	VM    string  `json:"vm"`
	// Revision is the group's configuration revision the workflow holds.
	Revision string `json:"revision"`
	// InstanceID is the domain's UUID; the node's provider ID names it.
	InstanceID string `json:"instanceId"`
	// TokenID is ignored: older histories carry the ID CreateJoinToken
	// returned then; the token is now made with the seed.
	TokenID string `json:"tokenId,omitempty"`
}

// Seed is what one VM's seed says, resolved in the worker.
type Seed struct {
	Group      string
	VM         string
	InstanceID string
	// NodeName is the rendered node name.
	NodeName   string
	ProviderID string
	// kubeadm: what kubeadm join is told.
	APIServerEndpoint string
	CACertHashes      []string
	Labels            map[string]string
	Taints            []Taint
	// UserData is the group's template (join: userData); fields .VM,
	// .Group, .NodeName, .ProviderID.
	UserData string
}

// SeedOutput names the seed volume.
type SeedOutput struct {
	Volume string `json:"volume"`
}

// CreateSeedVolume renders the VM's user-data and meta-data, writes them to
// an ISO9660 image labelled cidata, and uploads it to the host's pool as
// SeedVolumeName(vm), to be attached read-only as a CD-ROM. For join:
// kubeadm it first creates the VM's bootstrap token (newJoinToken), whose
// secret goes only into the seed. Idempotent: an existing seed volume is
// replaced by the new one; a retry makes a new token and leaves the one
// before to expire unused.
func (k *Kubernetes) CreateSeedVolume(ctx context.Context, in SeedInput) (SeedOutput, error) {
	defer keepAlive(ctx)()
	g, err := k.Catalog.Group(in.Group, in.Revision, in.VM, in.Host.Name)
	if err != nil {
		return SeedOutput{}, err
	}
	if _, err := uuid.Parse(in.InstanceID); err != nil {
		return SeedOutput{}, nonRetryable(ErrTypeInvalidConfig, "seed of %s: instance ID %q is not a UUID", in.VM, in.InstanceID)
	}
	name, err := config.RenderNodeName(g.Kubernetes.NodeName, in.Group, in.VM)
	if err != nil {
		return SeedOutput{}, nonRetryable(ErrTypeInvalidConfig, "node name of %s: %v", in.VM, err)
	}
	kc := k.Catalog.Kubernetes()
	seed := Seed{
		Group: in.Group, VM: in.VM, InstanceID: in.InstanceID, NodeName: name,
		ProviderID:        ProviderID(in.Group, in.InstanceID),
		APIServerEndpoint: kc.APIServerEndpoint, CACertHashes: kc.CACertHashes,
		Labels: g.Kubernetes.Labels, UserData: g.Kubernetes.UserData,
	}
	for _, t := range g.Kubernetes.Taints {
		seed.Taints = append(seed.Taints, Taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
	}
	var userData []byte
	switch g.Kubernetes.Join {
	case joinKubeadm:
		token, err := k.newJoinToken(ctx, in.Group, in.VM)
		if err != nil {
			return SeedOutput{}, err
		}
		if userData, err = KubeadmUserData(seed, token); err != nil {
			return SeedOutput{}, nonRetryable(ErrTypeInvalidConfig, "user-data of %s: %v", in.VM, err)
		}
	case joinUserData:
		if userData, err = TemplateUserData(seed); err != nil {
			return SeedOutput{}, nonRetryable(ErrTypeInvalidConfig, "user-data of %s: %v", in.VM, err)
		}
	default:
		return SeedOutput{}, nonRetryable(ErrTypeInvalidConfig, "group %s does not join Kubernetes (join %q); no seed", in.Group, g.Kubernetes.Join)
	}
	metaData, err := MetaData(seed)
	if err != nil {
		return SeedOutput{}, err
	}
	iso, err := SeedISO(userData, metaData)
	if err != nil {
		return SeedOutput{}, err
	}
	vol := SeedVolumeName(in.VM)
	if err := uploadVolume(k.Hosts, k.Catalog, ctx, in.Host, vol, iso, ownSeed(in.InstanceID)); err != nil {
		return SeedOutput{}, err
	}
	return SeedOutput{Volume: vol}, nil
}

// ProviderID is the provider ID of a VM's node: the kubelet registers it
// and the cluster-autoscaler matches nodes to groups by it.
func ProviderID(group, domainUUID string) string {
	return "premiscale://" + group + "/" + domainUUID
}

// NodeLabelGroup is the label every node PremiScale joins by kubeadm
// carries, its group's name: workloads (PremiScale's own pods first) can
// keep off the nodes PremiScale may scale in.
const NodeLabelGroup = "premiscale.io/group"

// KubeadmUserData renders a cloud-config that sets the kubelet's provider
// ID, labels (NodeLabelGroup and the group's) and taints and runs kubeadm join with the token and the CA
// hashes.
func KubeadmUserData(in Seed, token string) ([]byte, error) {
	if in.APIServerEndpoint == "" || len(in.CACertHashes) == 0 {
		return nil, fmt.Errorf("kubeadm join needs the API server endpoint and the CA cert hashes")
	}
	args := []string{"--provider-id=" + in.ProviderID}
	labels := map[string]string{NodeLabelGroup: in.Group}
	for k, v := range in.Labels {
		if k != NodeLabelGroup {
			labels[k] = v
		}
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + labels[k]
	}
	args = append(args, "--node-labels="+strings.Join(pairs, ","))
	if len(in.Taints) > 0 {
		ts := make([]string, len(in.Taints))
		for i, t := range in.Taints {
			ts[i] = t.Key + "=" + t.Value + ":" + t.Effect
		}
		args = append(args, "--register-with-taints="+strings.Join(ts, ","))
	}
	join := []string{"kubeadm", "join", in.APIServerEndpoint, "--token", token}
	for _, h := range in.CACertHashes {
		join = append(join, "--discovery-token-ca-cert-hash", h)
	}
	join = append(join, "--node-name", in.NodeName)
	doc := map[string]any{
		"hostname": in.NodeName,
		"write_files": []map[string]string{{
			"path":        "/etc/default/kubelet",
			"permissions": "0644",
			"content":     fmt.Sprintf("KUBELET_EXTRA_ARGS=%q\n", strings.Join(args, " ")),
		}},
		"runcmd": [][]string{join},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append([]byte("#cloud-config\n"), b...), nil
}

// TemplateUserData executes the group's user-data template.
func TemplateUserData(in Seed) ([]byte, error) {
	t, err := template.New("userData").Option("missingkey=error").Parse(in.UserData)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]string{"VM": in.VM, "Group": in.Group, "NodeName": in.NodeName, "ProviderID": in.ProviderID})
	return b.Bytes(), err
}

// MetaData is the NoCloud meta-data: the instance ID and the hostname,
// marshalled (a name can never add a key).
func MetaData(in Seed) ([]byte, error) {
	return yaml.Marshal(map[string]string{"instance-id": in.InstanceID, "local-hostname": in.NodeName})
}

// SeedISO writes user-data and meta-data to an ISO9660 image labelled cidata.
func SeedISO(userData, metaData []byte) ([]byte, error) {
	w, err := iso9660.NewWriter()
	if err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	defer func() { _ = w.Cleanup() }()
	if err := w.AddFile(bytes.NewReader(userData), "user-data"); err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	if err := w.AddFile(bytes.NewReader(metaData), "meta-data"); err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	var b bytes.Buffer
	if err := w.WriteTo(&b, SeedLabel); err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	return b.Bytes(), nil
}

// ReadSeedISO reads a seed image back: its files by name and its volume
// label (trailing padding removed).
func ReadSeedISO(iso []byte) (files map[string]string, label string, err error) {
	img, err := iso9660.OpenImage(bytes.NewReader(iso))
	if err != nil {
		return nil, "", fmt.Errorf("open seed image: %w", err)
	}
	if label, err = img.Label(); err != nil {
		return nil, "", fmt.Errorf("seed image label: %w", err)
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, "", fmt.Errorf("seed image root: %w", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		return nil, "", fmt.Errorf("seed image root: %w", err)
	}
	files = map[string]string{}
	for _, c := range children {
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			return nil, "", fmt.Errorf("seed image file %s: %w", c.Name(), err)
		}
		files[c.Name()] = string(b)
	}
	return files, strings.TrimRight(label, " \x00"), nil
}

// maxSeedSize bounds what is read back of an existing seed volume.
const maxSeedSize = 16 << 20

// ownSeed says whether an existing seed image may be replaced by the seed
// of instanceID: only if it is that instance's (an earlier attempt of the
// step), or unreadable (an upload that never finished, which holds no
// token). Another instance's seed (another installation's VM of the same
// name, or one of a lost history) is not replaced: "" means it may be, else
// why not.
func ownSeed(instanceID string) func(image []byte) string {
	return func(image []byte) string {
		files, _, err := ReadSeedISO(image)
		if err != nil {
			return ""
		}
		var md map[string]string
		if err := yaml.Unmarshal([]byte(files["meta-data"]), &md); err != nil || md["instance-id"] == "" {
			return ""
		}
		if md["instance-id"] != instanceID {
			return "it is the seed of instance " + md["instance-id"]
		}
		return ""
	}
}

// uploadVolume (re)creates the raw volume name in the host's pool with
// data. An existing volume of that name is replaced only if no domain has
// it as a disk and replaceable, given its current content, says "";
// otherwise the step is refused (ErrTypeNameTaken) and the volume left.
func uploadVolume(hosts *hostconn.Hosts, cat *Catalog, ctx context.Context, h HostRef, name string, data []byte, replaceable func([]byte) string) error {
	h, err := cat.Host(h)
	if err != nil {
		return err
	}
	lv, release, err := hosts.Acquire(ctx, h.Name, h.URI)
	if err != nil {
		return err
	}
	defer release()
	pool, err := lv.StoragePoolLookupByName(h.Pool)
	if err != nil {
		return fmt.Errorf("lookup pool %q: %w", h.Pool, err)
	}
	if old, err := lv.StorageVolLookupByName(pool, name); err == nil {
		use, err := readPoolUse(lv, h.Name, pool)
		if err != nil {
			return err
		}
		if users := use.users[name]; len(users) > 0 {
			return nonRetryable(ErrTypeNameTaken, "host %s: volume %q already exists and domain %s has it as a disk; not replacing it", h.Name, name, users[0])
		}
		var cur bytes.Buffer
		if err := lv.StorageVolDownload(old, &limitedWriter{w: &cur, n: maxSeedSize}, 0, maxSeedSize, 0); err != nil && !isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			return fmt.Errorf("read volume %q on %s: %w", name, h.Name, err)
		}
		if why := replaceable(cur.Bytes()); why != "" {
			return nonRetryable(ErrTypeNameTaken, "host %s: volume %q already exists and is not this provisioning's (%s); not replacing it", h.Name, name, why)
		}
		if err := lv.StorageVolDelete(old, 0); err != nil && !isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			return fmt.Errorf("replace volume %q: %w", name, err)
		}
	}
	doc, err := (&libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(len(data))},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}},
	}).Marshal()
	if err != nil {
		return err
	}
	vol, err := lv.StorageVolCreateXML(pool, doc, 0)
	if err != nil {
		return fmt.Errorf("create volume %q on %s: %w", name, h.Name, err)
	}
	if err := lv.StorageVolUpload(vol, bytes.NewReader(data), 0, uint64(len(data)), 0); err != nil {
		_ = lv.StorageVolDelete(vol, 0)
		if isLibvirtCode(err, libvirt.ErrNoSupport) {
			return nonRetryable(ErrTypeInvalidConfig, "host %s cannot take a seed volume (its driver does not support volume upload): %v", h.Name, err)
		}
		return fmt.Errorf("upload volume %q to %s: %w", name, h.Name, err)
	}
	return nil
}

// limitedWriter keeps at most n bytes and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	keep := p
	if int64(len(keep)) > l.n {
		keep = keep[:l.n]
	}
	if len(keep) > 0 {
		if _, err := l.w.Write(keep); err != nil {
			return 0, err
		}
		l.n -= int64(len(keep))
	}
	return len(p), nil
}
