package policy

import "strconv"

// NewNames picks the names of n new VMs of group: <group>-<seq> for the
// smallest seqs from next on whose names are not taken (present on some
// host, or a member's). It returns the names and their seqs, in order.
// After a state loss, or beside another installation whose group has the
// same name, the names in use are skipped rather than reused.
func NewNames(group string, next, n int, taken func(name string) bool) (names []string, seqs []int) {
	seq := max(next, 1)
	for len(names) < n {
		name := group + "-" + strconv.Itoa(seq)
		if !taken(name) {
			names = append(names, name)
			seqs = append(seqs, seq)
		}
		seq++
	}
	return names, seqs
}
