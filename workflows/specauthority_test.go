package workflows_test

import (
	"slices"
	"testing"

	"github.com/premiscale/premiscale/workflows"
)

func TestDiffSpecsNamesEveryDifferingField(t *testing.T) {
	base := workflows.GroupSpec{Name: "web", Revision: "r1", Min: 0, Max: 3, Desired: 1}
	for _, tc := range []struct {
		name string
		got  workflows.GroupSpec
		want []string
	}{
		{"same", base, nil},
		{"bounds", workflows.GroupSpec{Name: "web", Revision: "r1", Min: 0, Max: 1000, Desired: 50},
			[]string{"desired: 50, this worker's configuration has 1", "max: 1000, this worker's configuration has 3"}},
		{"a field the worker leaves out", func() workflows.GroupSpec { s := base; s.HistoryLimit = 9; return s }(),
			[]string{"historyLimit: 9, this worker's configuration has nothing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := workflows.DiffSpecs(tc.got, base); !slices.Equal(got, tc.want) {
				t.Errorf("DiffSpecs = %q, want %q", got, tc.want)
			}
		})
	}
}
