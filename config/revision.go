package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Revision identifies what a worker resolves of this group by name when a
// workflow asks it to create a VM: the template and the way its VMs join
// Kubernetes (user-data included). A workflow carries the revision of the
// configuration it was given, and a worker whose configuration of the group
// differs refuses to create VMs for it, so that workers run with different
// files are noticed instead of creating VMs that differ. Changes of sizes,
// checks or placement do not change it.
func (g Group) Revision() string {
	k := g.Kubernetes
	b, err := json.Marshal(struct {
		Template Template          `json:"template"`
		Join     string            `json:"join"`
		NodeName string            `json:"nodeName"`
		Labels   map[string]string `json:"labels"`
		Taints   []Taint           `json:"taints"`
		UserData string            `json:"userData"`
	}{g.Template, k.Join, k.NodeName, k.Labels, k.Taints, k.UserData})
	if err != nil {
		// Every field is plain data; Marshal cannot fail.
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
