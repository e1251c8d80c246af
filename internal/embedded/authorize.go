package embedded

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/common/api"
	"go.temporal.io/server/common/authorization"

	"github.com/premiscale/premiscale/internal/mtls"
)

// Access is who may do what on the embedded frontend. Every client has
// passed mutual TLS already; its certificate's role (mtls.RoleOf) decides:
//
//	worker    everything (the controller, the server's own system workers, remote workers)
//	operator  read the namespace; signal and Update the workflows and patch
//	          (pause, unpause, trigger) the schedules Operable allows
//	reader    read the namespace (the Web UI)
//	none      nothing but the health check
//
// "Read" is what Temporal marks read-only: describe, list, count, history,
// Query. Nobody but a worker may start, terminate, cancel, reset or delete a
// workflow, poll or complete a task, or call the admin service.
type Access struct {
	// Namespace is the one namespace operators and readers may use.
	Namespace string
	// Workers are certificate names (CN, DNS or URI SAN) that have the
	// worker role whatever their certificate carries: the controller's own
	// certificate from an operator's CA.
	Workers []string
	// OperableWorkflow reports whether operators may signal and Update the
	// workflow with this ID.
	OperableWorkflow func(id string) bool
	// OperableSchedule reports whether operators may patch the schedule
	// with this ID.
	OperableSchedule func(id string) bool
}

// claimMapper takes a caller's role from its verified client certificate.
type claimMapper struct{ workers []string }

var (
	_ authorization.ClaimMapper                     = claimMapper{}
	_ authorization.ClaimMapperWithAuthInfoRequired = claimMapper{}
	_ authorization.Authorizer                      = (*authorizer)(nil)
)

// GetClaims returns the caller's common name as Subject and its role as
// Extensions; a caller without a verified certificate gets no role.
func (m claimMapper) GetClaims(ai *authorization.AuthInfo) (*authorization.Claims, error) {
	cert := authorization.PeerCert(ai.TLSConnection)
	if cert == nil {
		return &authorization.Claims{}, nil
	}
	role := mtls.RoleOf(cert.Subject)
	if mtls.ClientIdentity(cert, m.workers) != "" {
		role = mtls.RoleWorker
	}
	return &authorization.Claims{Subject: cert.Subject.CommonName, AuthType: "certificate", Extensions: role}, nil
}

// AuthInfoRequired: without a certificate (or token) there is nothing to map.
func (claimMapper) AuthInfoRequired() bool { return true }

// authorizer applies Access to each call.
type authorizer struct{ a Access }

// Authorize allows a call when decide does; a refusal's reason reaches the
// caller in the PermissionDenied error.
func (z *authorizer) Authorize(_ context.Context, c *authorization.Claims, t *authorization.CallTarget) (authorization.Result, error) {
	if authorization.IsHealthCheckAPI(t.APIName) {
		return authorization.Result{Decision: authorization.DecisionAllow}, nil
	}
	var who string
	var role mtls.Role
	if c != nil {
		who = c.Subject
		role, _ = c.Extensions.(mtls.Role)
	}
	if reason := z.a.decide(who, role, t.APIName, t.Namespace, t.Request); reason != "" {
		return authorization.Result{Decision: authorization.DecisionDeny, Reason: reason}, nil
	}
	return authorization.Result{Decision: authorization.DecisionAllow}, nil
}

// decide returns "" when a caller named who with role may call api in
// namespace with req, else why not.
func (a Access) decide(who string, role mtls.Role, apiName, namespace string, req any) string {
	method := api.MethodName(apiName)
	switch role {
	case mtls.RoleWorker:
		return ""
	case mtls.RoleOperator, mtls.RoleReader:
	default:
		return fmt.Sprintf("certificate %q carries no PremiScale role (organizational unit %sworker, %soperator or %sreader); issue one with `premiscale tls issue NAME --role ROLE`",
			who, mtls.RolePrefix, mtls.RolePrefix, mtls.RolePrefix)
	}
	md := api.GetMethodMetadata(apiName)
	public := strings.HasPrefix(apiName, api.WorkflowServicePrefix) || strings.HasPrefix(apiName, api.OperatorServicePrefix)
	readOnly := public && md.Access == api.AccessReadOnly
	switch {
	case readOnly && md.Scope == api.ScopeCluster:
		return ""
	case md.Scope == api.ScopeNamespace && namespace != a.Namespace:
		return fmt.Sprintf("%s (role %s) may use namespace %q only, not %q", who, role, a.Namespace, namespace)
	case readOnly && md.Scope == api.ScopeNamespace:
		return ""
	case role == mtls.RoleOperator && a.operable(req):
		return ""
	case role == mtls.RoleOperator:
		return fmt.Sprintf("%s (role operator) may read, signal and Update PremiScale's group workflows and pause, unpause or trigger their schedules, not call %s on this target", who, method)
	default:
		return fmt.Sprintf("%s (role reader) may only read, not call %s", who, method)
	}
}

// operable reports whether an operator may make this write call.
func (a Access) operable(req any) bool {
	switch r := req.(type) {
	case *workflowservice.SignalWorkflowExecutionRequest:
		return a.OperableWorkflow != nil && a.OperableWorkflow(r.GetWorkflowExecution().GetWorkflowId())
	case *workflowservice.UpdateWorkflowExecutionRequest:
		return a.OperableWorkflow != nil && a.OperableWorkflow(r.GetWorkflowExecution().GetWorkflowId())
	case *workflowservice.PatchScheduleRequest:
		return a.OperableSchedule != nil && a.OperableSchedule(r.GetScheduleId())
	}
	return false
}
