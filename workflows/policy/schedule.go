package policy

import "time"

// Window is one firing of a group's schedule: from Start (the time the
// schedule fired for, not when its action ran) until Until, the group's
// min and max are the window's where it sets them. Its desired is set
// once, when it opens and governs; metrics or a hand may move it within
// the bounds afterwards, and it is not set again when the window governs
// again after a later one ended.
//
// Overlapping windows: the one that started last governs alone (its
// values, the configuration's for what it leaves unset); of windows that
// started at the same time, the one whose schedule is listed later in the
// group's configuration (higher Order). When it ends, the next one by the
// same rule that is still open governs again, or the configuration. This
// is what AWS scheduled actions do (the latest action wins), with an end.
//
//	config ──fire A──▶ A ──fire B──▶ B ──B ends──▶ A ──A ends──▶ config
type Window struct {
	Schedule string    `json:"schedule"`
	Order    int       `json:"order"`
	Start    time.Time `json:"start"`
	Until    time.Time `json:"until"`
	Min      *int      `json:"min,omitempty"`
	Max      *int      `json:"max,omitempty"`
	Desired  *int      `json:"desired,omitempty"`
}

// Open reports whether the window governs at now if nothing newer does.
func (w Window) Open(now time.Time) bool { return !now.Before(w.Start) && now.Before(w.Until) }

// Governing returns the window that governs at now by the rule above, or
// nil when none is open.
func Governing(ws []Window, now time.Time) *Window {
	var best *Window
	for i := range ws {
		w := &ws[i]
		if !w.Open(now) {
			continue
		}
		if best == nil || w.Start.After(best.Start) || (w.Start.Equal(best.Start) && w.Order > best.Order) {
			best = w
		}
	}
	return best
}

// Bounds returns min and max under w: its own where it sets them, the
// configuration's (lo, hi) otherwise. A nil w leaves them as they are.
func Bounds(w *Window, lo, hi int) (int, int) {
	if w == nil {
		return lo, hi
	}
	if w.Min != nil {
		lo = *w.Min
	}
	if w.Max != nil {
		hi = *w.Max
	}
	return lo, hi
}

// NextWindowChange is the earliest time after now at which a window opens
// or ends, so that the group wakes to apply it; zero if none will.
func NextWindowChange(ws []Window, now time.Time) time.Time {
	var next time.Time
	for _, w := range ws {
		for _, t := range []time.Time{w.Start, w.Until} {
			if t.After(now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}

// PruneWindows drops the windows that ended at or before now.
func PruneWindows(ws []Window, now time.Time) []Window {
	out := ws[:0:0]
	for _, w := range ws {
		if now.Before(w.Until) {
			out = append(out, w)
		}
	}
	return out
}
