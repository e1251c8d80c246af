package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
)

// GroupMembership reads a group's members from the group's own workflow,
// which the worker finds by the group's name alone (the worker package
// wires it to a Temporal query).
type GroupMembership interface {
	// ProviderIDs returns the provider IDs of the group's members in every
	// state (provisioning, warm, running, lost, decommissioning). An error
	// that is not a temporal.ApplicationError is retried.
	ProviderIDs(ctx context.Context, group string) ([]string, error)
}

// ParseProviderID splits premiscale://<group>/<uuid>; ok is false for any
// other provider ID.
func ParseProviderID(providerID string) (group, domainUUID string, ok bool) {
	rest, ok := strings.CutPrefix(providerID, "premiscale://")
	if !ok {
		return "", "", false
	}
	group, domainUUID, ok = strings.Cut(rest, "/")
	if !ok || group == "" || strings.Contains(domainUUID, "/") {
		return "", "", false
	}
	if _, err := uuid.Parse(domainUUID); err != nil {
		return "", "", false
	}
	return group, domainUUID, true
}

// markLookupTimeout bounds each host's part of ownNode's domain check: a
// host that does not answer in time is passed over (its VM may be the
// lost one whose node is being cleaned up).
const markLookupTimeout = 10 * time.Second

// ownNode is checked before any Node is cordoned, drained, counted or
// deleted, whatever the caller says: the Node's provider ID must be
// premiscale://<group>/<uuid> of a member that the group's own workflow
// lists (in any state, so that the node of a lost or half-made VM can
// still be cleaned up), and where one of the group's configured hosts has
// a domain with that UUID, the domain must carry this installation's mark
// for that group. Anything else fails without retry (ErrTypeNotOwned).
func (k *Kubernetes) ownNode(ctx context.Context, providerID string) error {
	return k.ownNodeIn(ctx, providerID, map[string][]string{})
}

// ownNodeIn is ownNode reading each group's members once into members.
func (k *Kubernetes) ownNodeIn(ctx context.Context, providerID string, members map[string][]string) error {
	group, id, ok := ParseProviderID(providerID)
	if !ok {
		return nonRetryable(ErrTypeNotOwned, "node with provider ID %q is not a PremiScale VM's (premiscale://<group>/<uuid>); not touching it", providerID)
	}
	if k.Members == nil {
		return nonRetryable(ErrTypeNotOwned, "this worker cannot read the members of group %s; not touching node %s", group, providerID)
	}
	ids, read := members[group]
	if !read {
		var err error
		if ids, err = k.Members.ProviderIDs(ctx, group); err != nil {
			var ae *temporal.ApplicationError
			if errors.As(err, &ae) {
				return ae // as it is: a wrapped one would be retried
			}
			return fmt.Errorf("members of group %s: %w", group, err)
		}
		members[group] = ids
	}
	if !slices.Contains(ids, providerID) {
		return nonRetryable(ErrTypeNotOwned, "node %s is not a member's of group %s (its workflow lists no such VM); not touching it", providerID, group)
	}
	return k.ownDomainMark(ctx, group, id)
}

// ownDomainMark fails if a configured host of the group has a domain with
// the UUID that is not this installation's VM of the group. Hosts that do
// not answer are passed over.
func (k *Kubernetes) ownDomainMark(ctx context.Context, group, id string) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return nonRetryable(ErrTypeNotOwned, "%q is not a UUID", id)
	}
	for _, h := range k.Catalog.groupHosts(group) {
		owner, found, err := k.markByUUID(ctx, h, libvirt.UUID(u))
		if err != nil || !found {
			continue
		}
		if owner.Group != group || !k.Catalog.ours(owner) {
			return nonRetryable(ErrTypeNotOwned, "host %s: the domain with UUID %s is not this installation's VM of group %s; not touching its node", h.Name, id, group)
		}
	}
	return nil
}

// markByUUID reads the mark of host h's domain with the UUID.
func (k *Kubernetes) markByUUID(ctx context.Context, h HostRef, u libvirt.UUID) (Owner, bool, error) {
	if k.Hosts == nil {
		return Owner{}, false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, markLookupTimeout)
	defer cancel()
	lv, release, err := k.Hosts.Acquire(cctx, h.Name, h.URI)
	if err != nil {
		return Owner{}, false, err
	}
	defer release()
	dom, err := lv.DomainLookupByUUID(u)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return Owner{}, false, nil
		}
		return Owner{}, false, err
	}
	o, ok, gone, err := readMark(lv, dom)
	if err != nil || gone {
		return Owner{}, false, err
	}
	if !ok {
		return Owner{Group: "(no mark)"}, true, nil
	}
	return o, true, nil
}
