package activities

// HostChange is the payload of the group workflow's host-change signal,
// which the host watchers (internal/hostwatch) send. It tells a group that
// one of its domains on a host changed behind its back (or by its own
// hand: the group tells the two apart). It carries names only.
type HostChange struct {
	Host   string `json:"host"`
	Domain string `json:"domain"`
	// Event is libvirt's lifecycle event ("stopped", "undefined", ...),
	// EventResync or EventDisconnected.
	Event string `json:"event"`
}

// HostChange events that are not libvirt's.
const (
	// EventResync follows a reconnection, when events may have been missed;
	// it is sent to every group with a domain on the host.
	EventResync = "resync"
	// EventDisconnected: the watcher lost (or could not make) its
	// connection to the host; it is sent to every group that uses the host,
	// once per outage. Domain is empty.
	EventDisconnected = "disconnected"
)
