package activities

import (
	"testing"
	"time"
)

func TestClockSkewIsWhatLiesOutsideTheCallsWindow(t *testing.T) {
	before := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	after := before.Add(300 * time.Millisecond)
	for _, tc := range []struct {
		name string
		host time.Time
		want time.Duration
	}{
		{"inside the window", before.Add(100 * time.Millisecond), 0},
		{"at its start", before, 0},
		{"at its end", after, 0},
		{"ahead", after.Add(90 * time.Second), 90 * time.Second},
		{"behind", before.Add(-5 * time.Second), -5 * time.Second},
	} {
		if got := ClockSkew(before, after, tc.host); got != tc.want {
			t.Errorf("%s: ClockSkew = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestParseVolumeTimeReadsLibvirtsTimestamps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"1796670823.123456789", time.Unix(1796670823, 123456789), true},
		{"1796670823.5", time.Unix(1796670823, 500000000), true},
		{"1796670823", time.Unix(1796670823, 0), true},
		{" 1796670823.000000001\n", time.Unix(1796670823, 1), true},
		{"", time.Time{}, false},
		{"0", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"1796670823.x", time.Time{}, false},
	} {
		got, ok := parseVolumeTime(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseVolumeTime(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
