package k8s

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// auditPolicy records who did what to which resource (no bodies) for every
// request but the read-only noise of the control plane's own components.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:nodes"]
    verbs: [get, list, watch]
  - level: Metadata
`

// AuditEvent is one request as the API server's audit log has it.
type AuditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"` // path and query (a list's labelSelector)
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	Stage string `json:"stage"`
}

// Resource is the event's resource as an RBAC rule names it: "group/resource"
// with "/subresource" appended (group empty for the core API).
func (e AuditEvent) Resource() string {
	if e.ObjectRef == nil {
		return ""
	}
	r := e.ObjectRef.APIGroup + "/" + e.ObjectRef.Resource
	if e.ObjectRef.Subresource != "" {
		r += "/" + e.ObjectRef.Subresource
	}
	return r
}

// AuditLog is the path of the API server's audit log.
func (c *Cluster) AuditLog() string { return filepath.Join(c.Dir, "audit.log") }

// Audit returns the requests of user, oldest first: each once it has
// completed, a watch once it has started.
func (c *Cluster) Audit(user string) ([]AuditEvent, error) {
	f, err := os.Open(c.AuditLog())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		// A watch is logged when it starts; it completes only when closed.
		done := e.Stage == "ResponseComplete" || (e.Verb == "watch" && e.Stage == "ResponseStarted")
		if e.User.Username == user && done {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}
