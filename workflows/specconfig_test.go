package workflows_test

import (
	"fmt"
	"testing"

	"github.com/premiscale/premiscale/workflows"
)

// Groups created together continue as new at history lengths spread over
// [3000, 4000), not at one length in the same minute.
func TestHistoryLimitSpreadsGroups(t *testing.T) {
	buckets := make([]int, 10)
	for i := range 1000 {
		l := workflows.HistoryLimit(fmt.Sprintf("group-%d", i))
		if l < 3000 || l >= 4000 {
			t.Fatalf("workflows.HistoryLimit(group-%d) = %d, outside [3000, 4000)", i, l)
		}
		buckets[(l-3000)/100]++
	}
	for i, n := range buckets {
		if n < 50 || n > 150 { // 100 expected in each
			t.Errorf("%d of 1,000 groups continue as new in [%d, %d): %v", n, 3000+100*i, 3100+100*i, buckets)
		}
	}
}
