// The group's members and events: look-ups, counts and the event log.

package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/workflow"

	"github.com/premiscale/premiscale/activities"
)

func (g *group) event(ctx workflow.Context, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	g.logger.Info(msg, "group", g.spec.Name)
	g.st.Events = append(g.st.Events, Event{At: workflow.Now(ctx), Message: msg})
	if len(g.st.Events) > maxEvents {
		g.st.Events = g.st.Events[len(g.st.Events)-maxEvents:]
	}
}

func (g *group) fail(ctx workflow.Context, msg string) {
	g.st.LastError = msg
	g.st.LastErrorAt = workflow.Now(ctx)
	g.event(ctx, "%s", msg)
}

func (g *group) host(name string) (activities.HostRef, bool) {
	for _, h := range g.spec.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return activities.HostRef{}, false
}

func (g *group) member(name string) *Member {
	for i := range g.st.Members {
		if g.st.Members[i].Name == name {
			return &g.st.Members[i]
		}
	}
	return nil
}

func (g *group) removeMember(name string) {
	g.st.Members = slices.DeleteFunc(g.st.Members, func(m Member) bool { return m.Name == name })
}

func (g *group) count(states ...MemberState) int {
	n := 0
	for _, m := range g.st.Members {
		if slices.Contains(states, m.State) {
			n++
		}
	}
	return n
}
