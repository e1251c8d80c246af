package activities

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/premiscale/premiscale/config"
)

// KeptRevisions is how many revisions of each group a worker keeps (the
// one configured now among them), so that a rollback can build VMs from
// the template it ran before.
const KeptRevisions = 5

// keptRevision is one revision of a group as the worker ran with it: what
// config.Group.Revision covers, nothing else.
type keptRevision struct {
	Revision string            `json:"revision"`
	Since    time.Time         `json:"since"`
	Template config.Template   `json:"template"`
	Join     string            `json:"join"`
	NodeName string            `json:"nodeName"`
	Labels   map[string]string `json:"labels"`
	Taints   []config.Taint    `json:"taints"`
	UserData string            `json:"userData"`
}

// revisionsFile is the file of KeepRevisions.
const revisionsFile = "revisions.json"

// KeepRevisions remembers, in dir (the worker's own state directory,
// never anything a workflow hands it), the last KeptRevisions revisions of
// every configured group, adding the ones configured now, and lets Group
// and Member resolve them. Workflows carry revisions by their hash only;
// a rollback to one this worker never ran with is refused as
// ConfigMismatch, as before. The file is private (0600): user-data may
// hold secrets.
func (c *Catalog) KeepRevisions(dir string, now time.Time) error {
	path := filepath.Join(dir, revisionsFile)
	kept := map[string][]keptRevision{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read kept revisions: %w", err)
	default:
		if err := json.Unmarshal(b, &kept); err != nil {
			return fmt.Errorf("read kept revisions %s: %w", path, err)
		}
	}
	for name, g := range c.groups {
		rev := g.Revision()
		list := slices.DeleteFunc(kept[name], func(k keptRevision) bool { return k.Revision == rev })
		k := g.Kubernetes
		list = append(list, keptRevision{Revision: rev, Since: now, Template: g.Template,
			Join: k.Join, NodeName: k.NodeName, Labels: k.Labels, Taints: k.Taints, UserData: k.UserData})
		slices.SortStableFunc(list, func(a, b keptRevision) int { return a.Since.Compare(b.Since) })
		if len(list) > KeptRevisions {
			list = list[len(list)-KeptRevisions:]
		}
		kept[name] = list
	}
	out, err := json.MarshalIndent(kept, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keep revisions: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("keep revisions: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keep revisions: %w", err)
	}
	c.kept = map[string]map[string]config.Group{}
	for name, list := range kept {
		g, ok := c.groups[name]
		if !ok {
			continue // a group no longer configured: nothing is built for it
		}
		c.kept[name] = map[string]config.Group{}
		for _, k := range list {
			old := g
			old.Template = k.Template
			old.Kubernetes.Join, old.Kubernetes.NodeName, old.Kubernetes.Labels, old.Kubernetes.Taints, old.Kubernetes.UserData = k.Join, k.NodeName, k.Labels, k.Taints, k.UserData
			if old.Revision() == k.Revision { // an edited file is not trusted
				c.kept[name][k.Revision] = old
			}
		}
	}
	return nil
}
