// Package activities holds PremiScale's side effects as Temporal activities:
// one struct per system it talks to. Every activity is idempotent, so that
// Temporal may retry it after any failure, including a crash of the worker
// after the side effect happened but before its result was recorded.
package activities

import (
	"context"
	"errors"
	"fmt"
	"github.com/premiscale/premiscale/internal/hostconn"
	"time"

	"github.com/digitalocean/go-libvirt"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Error types of non-retryable activity failures; workflows branch on them.
const (
	// ErrTypeNotOwned: a domain with the wanted name exists but is not
	// PremiScale's (or belongs to another group); it is never touched.
	ErrTypeNotOwned = "NotOwned"
	// ErrTypeNameTaken: a disk or seed volume of the new VM's name exists
	// and is not this provisioning's (CloneVolume, CreateSeedVolume); it is
	// left as it is, and the provisioning gives up the name.
	ErrTypeNameTaken = "NameTaken"
	// ErrTypeInvalidConfig: the template or host cannot work as configured
	// (missing pool or base volume, invalid XML); retrying cannot help.
	ErrTypeInvalidConfig = "InvalidConfig"
	// ErrTypeBootFailed: the domain stopped on its own while booting.
	ErrTypeBootFailed = "BootFailed"
	// ErrTypeReadyUnseen: nobody watched the console of a booting warm VM
	// for a while (a worker was lost); its ready line may have gone by.
	ErrTypeReadyUnseen = "ReadyUnseen"
	// ErrTypeMissing: a resource an earlier step created has vanished.
	ErrTypeMissing = "Missing"
	// ErrTypeInUse: a volume to delete is still a disk of some domain.
	ErrTypeInUse = "InUse"
)

// HostRef says which hypervisor an activity acts on. Only its name (and
// placement's numbers) travels in workflow history: URI and Pool are never
// serialized, and an activity fills them in from the worker's Catalog.
type HostRef struct {
	Name string `json:"name"`
	URI  string `json:"-"`
	Pool string `json:"-"`
	// ReservedMemoryBytes, ReservedCPUs and CPUOvercommit shape placement.
	ReservedMemoryBytes uint64  `json:"reservedMemoryBytes,omitempty"`
	ReservedCPUs        int     `json:"reservedCPUs,omitempty"`
	CPUOvercommit       float64 `json:"cpuOvercommit,omitempty"`
	MemoryOvercommit    float64 `json:"memoryOvercommit,omitempty"`
}

// DomainRef names one VM of a group on a host.
type DomainRef struct {
	Host  HostRef `json:"host"`
	Group string  `json:"group"`
	VM    string  `json:"vm"`
}

// Libvirt is the set of libvirt activities; it holds the pooled connections
// and the worker's catalog of hosts and groups.
type Libvirt struct {
	Hosts   *hostconn.Hosts
	Catalog *Catalog
	// PollInterval is how often waits poll a domain's state; zero means 250 ms.
	PollInterval time.Duration

	marks markCache
}

// conn resolves *h by name in the worker's catalog (filling in its URI and
// pool), then takes one of its connection slots and returns the
// connection; release gives the slot back (see Hosts).
func (l *Libvirt) conn(ctx context.Context, h *HostRef) (lv *libvirt.Libvirt, release func(), err error) {
	r, err := l.Catalog.Host(*h)
	if err != nil {
		return nil, nil, err
	}
	*h = r
	return l.Hosts.Acquire(ctx, h.Name, h.URI)
}

// keepAlive heartbeats every second until stop is called. With a short
// HeartbeatTimeout on the activity, Temporal notices a dead worker within
// seconds and retries elsewhere, instead of waiting out StartToClose.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

func (l *Libvirt) poll() time.Duration {
	if l.PollInterval > 0 {
		return l.PollInterval
	}
	return 250 * time.Millisecond
}

func nonRetryable(errType string, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return temporal.NewNonRetryableApplicationError(err.Error(), errType, errors.Unwrap(err))
}

func isLibvirtCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}
