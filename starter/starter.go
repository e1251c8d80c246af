// Package starter is PremiScale's client side: it connects to Temporal,
// ensures one workflow per configured group, and scales, pauses, resumes and
// queries groups on behalf of the CLI.
package starter

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/premiscale/premiscale/config"
	"github.com/premiscale/premiscale/workflows"
)

// ErrUnknownGroup is returned for a group name the configuration lacks.
var ErrUnknownGroup = errors.New("unknown group")

// ErrOutOfRange is returned for a desired size outside [min, max].
var ErrOutOfRange = errors.New("desired size out of range")

// Starter acts on group workflows for one configuration.
type Starter struct {
	Client client.Client
	Config *config.Config
}

func (s *Starter) explain(name string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("group %s has no running workflow (%s); start the controller with this config: %w",
			name, workflows.GroupWorkflowID(name), err)
	}
	var unavailable *serviceerror.Unavailable
	if errors.As(err, &unavailable) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, s.Config.TemporalAddress(), err)
	}
	return fmt.Errorf("group %s: %w", name, err)
}
