package mtls

import (
	"crypto/x509/pkix"
	"fmt"
	"slices"
	"strings"
)

// Role is what a client certificate may do on the embedded frontend. It is
// carried in the certificate's subject as an organizational unit
// RolePrefix+role, so a certificate's rights are signed by the CA that
// issued it and cannot be claimed by anyone else.
type Role string

// The roles, from most to least rights.
const (
	// RoleWorker may do anything in the namespace: poll and complete tasks,
	// start PremiScale's workflows, manage its schedules. The controller's
	// own certificate and remote workers' carry it.
	RoleWorker Role = "worker"
	// RoleOperator may read everything, and signal and update the group
	// workflows (what `premiscale scale` and the temporal CLI do), but not
	// start, terminate, reset or cancel any workflow nor act as a worker.
	RoleOperator Role = "operator"
	// RoleReader may only read: the Temporal Web UI's certificate.
	RoleReader Role = "reader"
)

// RolePrefix starts the organizational unit that names a certificate's role.
const RolePrefix = "premiscale:"

// Roles lists every role, for messages and flags.
var Roles = []Role{RoleWorker, RoleOperator, RoleReader}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("role %q: must be one of %s", s, roleList())
}

// RoleOf returns the role a certificate subject carries: "" when it names
// none, or more than one.
func RoleOf(subject pkix.Name) Role {
	var found Role
	for _, ou := range subject.OrganizationalUnit {
		name, ok := strings.CutPrefix(ou, RolePrefix)
		if !ok {
			continue
		}
		r, err := ParseRole(name)
		if err != nil || (found != "" && found != r) {
			return ""
		}
		found = r
	}
	return found
}

func roleList() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}
