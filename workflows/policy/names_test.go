package policy

import (
	"reflect"
	"testing"
)

func TestNewNamesSkipsEveryNameInUse(t *testing.T) {
	tests := []struct {
		name     string
		next, n  int
		taken    []string
		want     []string
		wantSeqs []int
	}{
		{"nothing taken", 3, 2, nil, []string{"web-3", "web-4"}, []int{3, 4}},
		{"a fresh state beside old VMs", 1, 3, []string{"web-1", "web-2", "web-4"}, []string{"web-3", "web-5", "web-6"}, []int{3, 5, 6}},
		{"names of other groups do not count", 1, 1, []string{"webx-1", "db-1"}, []string{"web-1"}, []int{1}},
		{"zero starts at one", 0, 1, nil, []string{"web-1"}, []int{1}},
		{"none wanted", 5, 0, []string{"web-5"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			taken := map[string]bool{}
			for _, n := range tt.taken {
				taken[n] = true
			}
			names, seqs := NewNames("web", tt.next, tt.n, func(n string) bool { return taken[n] })
			if !reflect.DeepEqual(names, tt.want) || !reflect.DeepEqual(seqs, tt.wantSeqs) {
				t.Errorf("NewNames = %v %v, want %v %v", names, seqs, tt.want, tt.wantSeqs)
			}
		})
	}
}
