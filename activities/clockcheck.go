package activities

import (
	"crypto/rand"
	"encoding/hex"

	"math"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// ClockProbePrefix starts the name of the empty volume that checkClock
// creates and deletes again in a host's pool: not VolumePrefix, so no scan
// ever takes a probe for a member's volume or an orphan.
const ClockProbePrefix = "premiscale.clockcheck-"

// Clock skew a host may have before a check warns, and before it is an
// error: TLS certificates issued on one side are "not yet valid" on the
// other, kubeadm's bootstrap tokens and Kubernetes leases misjudge time.
const (
	ClockSkewWarn  = 2 * time.Second
	ClockSkewError = time.Minute
)

// checkClock measures how far the host's clock is from this machine's.
// libvirt has no call that returns a host's time, so it creates an empty
// volume in the pool and reads the creation time the host's filesystem
// gave it, bracketed by this machine's clock before and after the call,
// then deletes the volume. A leftover probe (a process killed between the
// two) is deleted by the next check once it is a minute old. Pools whose
// volumes carry no timestamps (LVM, the test driver) cannot be measured,
// which is a warning.
func checkClock(lv *libvirt.Libvirt, pool libvirt.StoragePool, r *HostReport) {
	removeStaleProbes(lv, pool)
	var b [6]byte
	_, _ = rand.Read(b[:])
	doc, err := (&libvirtxml.StorageVolume{
		Name:     ClockProbePrefix + hex.EncodeToString(b[:]),
		Capacity: &libvirtxml.StorageVolumeSize{Value: 0},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}},
	}).Marshal()
	if err != nil {
		r.add("clock", "", SeverityWarn, "cannot measure: %v", err)
		return
	}
	before := time.Now()
	vol, err := lv.StorageVolCreateXML(pool, doc, 0)
	after := time.Now()
	if err != nil {
		r.add("clock", "", SeverityWarn, "cannot measure: create an empty probe volume in the pool: %v", err)
		return
	}
	defer func() { _ = lv.StorageVolDelete(vol, 0) }()
	created, ok := volumeCtime(lv, vol)
	if !ok {
		r.add("clock", "", SeverityWarn, "cannot measure: the pool's volumes carry no timestamps (not a directory or filesystem pool)")
		return
	}
	skew := ClockSkew(before, after, created)
	r.ClockSkewSeconds = skew.Seconds()
	r.ClockMeasured = true
	abs := skew.Abs()
	switch {
	case abs > ClockSkewError:
		r.add("clock", "", SeverityError, "the host's clock is %s %s this machine's: TLS certificates and Kubernetes join tokens fail; run NTP (chrony) on both", abs.Round(time.Second), aheadOrBehind(skew))
	case abs > ClockSkewWarn:
		r.add("clock", "", SeverityWarn, "the host's clock is %s %s this machine's; run NTP (chrony) on both", abs.Round(100*time.Millisecond), aheadOrBehind(skew))
	default:
		r.add("clock", "", SeverityOK, "clock within %s of this machine's (measured %s, in a %s round trip)", ClockSkewWarn, skew.Round(time.Millisecond), after.Sub(before).Round(time.Millisecond))
	}
}

func aheadOrBehind(skew time.Duration) string {
	if skew > 0 {
		return "ahead of"
	}
	return "behind"
}

// ClockSkew is how far a time the host stamped between before and after
// (this machine's clock, read around the call) lies outside that window:
// zero inside it, so a slow call never reads as skew.
func ClockSkew(before, after, host time.Time) time.Duration {
	switch {
	case host.Before(before):
		return host.Sub(before)
	case host.After(after):
		return host.Sub(after)
	}
	return 0
}

// volumeCtime reads a volume's change time from its XML ("seconds.nanos").
func volumeCtime(lv *libvirt.Libvirt, vol libvirt.StorageVol) (time.Time, bool) {
	x, err := lv.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return time.Time{}, false
	}
	var v libvirtxml.StorageVolume
	if err := v.Unmarshal(x); err != nil || v.Target == nil || v.Target.Timestamps == nil {
		return time.Time{}, false
	}
	return parseVolumeTime(v.Target.Timestamps.Ctime)
}

// parseVolumeTime parses libvirt's "1700000000.123456789".
func parseVolumeTime(s string) (time.Time, bool) {
	sec, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	var nanos int64
	if frac != "" {
		f, err := strconv.ParseFloat("0."+frac, 64)
		if err != nil {
			return time.Time{}, false
		}
		nanos = int64(math.Round(f * 1e9))
	}
	return time.Unix(n, nanos), true
}

// removeStaleProbes deletes probe volumes a minute old or more: left by a
// check that did not finish. Only names with ClockProbePrefix are touched.
func removeStaleProbes(lv *libvirt.Libvirt, pool libvirt.StoragePool) {
	vols, _, err := lv.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return
	}
	for _, v := range vols {
		if !strings.HasPrefix(v.Name, ClockProbePrefix) {
			continue
		}
		if ct, ok := volumeCtime(lv, v); ok && time.Since(ct) < time.Minute {
			continue
		}
		_ = lv.StorageVolDelete(v, 0)
	}
}
