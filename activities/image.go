package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/premiscale/premiscale/internal/hostconn"
	"io"
	"os"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// ImageFile is a disk image on this machine, as UploadImage sends it.
type ImageFile struct {
	Path string
	// Format is qcow2 (by its header's magic) or raw.
	Format string
	// Bytes is the file's size: what is sent.
	Bytes int64
	// VirtualBytes is the disk's size as a guest sees it (the qcow2
	// header's, or the file's for raw).
	VirtualBytes uint64
	// SHA256 is the file's checksum, hex.
	SHA256 string
}

// InspectImage reads an image's format, sizes and checksum.
func InspectImage(path string) (ImageFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return ImageFile{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ImageFile{}, err
	}
	if !fi.Mode().IsRegular() {
		return ImageFile{}, fmt.Errorf("%s is not a regular file", path)
	}
	img := ImageFile{Path: path, Format: "raw", Bytes: fi.Size(), VirtualBytes: uint64(fi.Size())}
	head := make([]byte, 32)
	if n, _ := io.ReadFull(f, head); n == 32 && bytes.Equal(head[:4], []byte{'Q', 'F', 'I', 0xfb}) {
		img.Format, img.VirtualBytes = "qcow2", binary.BigEndian.Uint64(head[24:32])
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ImageFile{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ImageFile{}, err
	}
	img.SHA256 = hex.EncodeToString(h.Sum(nil))
	return img, nil
}

// ImageUpload says what UploadImage did on one host.
type ImageUpload struct {
	Host     string `json:"host"`
	Volume   string `json:"volume"`
	Format   string `json:"format"`
	Capacity uint64 `json:"capacityBytes"`
	SHA256   string `json:"sha256"`
	Replaced bool   `json:"replaced,omitempty"`
}

// ErrVolumeExists: the volume is there and UploadImage was not told to
// replace it.
var ErrVolumeExists = errors.New("volume exists")

// UploadImage creates volume name in the configured host's pool from the
// image file, in the image's format, and checks on the host that it holds
// the image: its format, its virtual size (so clones start at the image's
// disk size, not the file's), and its checksum, read back from the host.
// An existing volume is replaced only with replace, and never while a
// domain uses it or a volume is an overlay of it (every clone of a base
// image is). Not an activity: the file is on this machine.
func UploadImage(ctx context.Context, hosts *hostconn.Hosts, cat *Catalog, h HostRef, img ImageFile, name string, replace bool) (ImageUpload, error) {
	h, err := cat.Host(h)
	if err != nil {
		return ImageUpload{}, err
	}
	out := ImageUpload{Host: h.Name, Volume: name, Format: img.Format}
	lv, release, err := hosts.Acquire(ctx, h.Name, h.URI)
	if err != nil {
		return out, err
	}
	defer release()
	pool, err := lv.StoragePoolLookupByName(h.Pool)
	if err != nil {
		return out, fmt.Errorf("storage pool %q: %w", h.Pool, err)
	}
	if old, err := lv.StorageVolLookupByName(pool, name); err == nil {
		if !replace {
			return out, fmt.Errorf("%w: %q in pool %q (--replace replaces it)", ErrVolumeExists, name, h.Pool)
		}
		use, err := readPoolUse(lv, h.Name, pool)
		if err != nil {
			return out, err
		}
		if users := use.users[name]; len(users) > 0 {
			return out, fmt.Errorf("volume %q is a disk of domain %s; not replacing it", name, users[0])
		}
		over, err := use.backedBy(lv, old)
		if err != nil {
			return out, err
		}
		if len(over) > 0 {
			return out, fmt.Errorf("volume %q is the base of %d volumes (%s...); replacing it would corrupt them: upload under a new name and point the template at it", name, len(over), over[0])
		}
		if err := lv.StorageVolDelete(old, 0); err != nil {
			return out, fmt.Errorf("delete old volume %q: %w", name, err)
		}
		out.Replaced = true
	}
	doc, err := (&libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(img.Bytes)},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: img.Format}},
	}).Marshal()
	if err != nil {
		return out, err
	}
	vol, err := lv.StorageVolCreateXML(pool, doc, 0)
	if err != nil {
		return out, fmt.Errorf("create volume %q: %w", name, err)
	}
	f, err := os.Open(img.Path)
	if err != nil {
		return out, err
	}
	defer f.Close()
	if err := lv.StorageVolUpload(vol, f, 0, uint64(img.Bytes), 0); err != nil {
		_ = lv.StorageVolDelete(vol, 0)
		return out, fmt.Errorf("upload %s to %q: %w", img.Path, name, err)
	}
	if err := lv.StoragePoolRefresh(pool, 0); err != nil {
		return out, fmt.Errorf("refresh pool %q: %w", h.Pool, err)
	}
	// What the host now has: its own description of the volume...
	if vol, err = lv.StorageVolLookupByName(pool, name); err != nil {
		return out, err
	}
	vdoc, err := lv.StorageVolGetXMLDesc(vol, 0)
	var vx libvirtxml.StorageVolume
	if err != nil || vx.Unmarshal(vdoc) != nil {
		return out, fmt.Errorf("read volume %q back: %v", name, err)
	}
	if vx.Target == nil || vx.Target.Format == nil || vx.Target.Format.Type != img.Format {
		return out, fmt.Errorf("volume %q on %s does not read as %s", name, h.Name, img.Format)
	}
	if vx.Capacity != nil {
		out.Capacity = vx.Capacity.Value * unitBytes(vx.Capacity.Unit)
	}
	if out.Capacity != img.VirtualBytes {
		return out, fmt.Errorf("volume %q on %s is %d bytes, the image %d", name, h.Name, out.Capacity, img.VirtualBytes)
	}
	// ...and its bytes, read back over a connection of its own, bounded.
	// A read that differs is read again before the volume is called
	// wrong: a read of a just-replaced volume once came back different in
	// CI (libvirt 9.0, go-libvirt's streams; the cause is not known), and
	// a volume that really differs differs on every read.
	var sum string
	for attempt := 1; ; attempt++ {
		sum, err = downloadSHA256(ctx, hosts, h, vol, img.Bytes)
		if err != nil {
			return out, fmt.Errorf("verify volume %q on %s: %w", name, h.Name, err)
		}
		if sum == img.SHA256 {
			break
		}
		if attempt == verifyReads {
			return out, fmt.Errorf("volume %q on %s has checksum %s, the image %s (read %d times)", name, h.Name, sum, img.SHA256, attempt)
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("verify volume %q on %s: %w", name, h.Name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	out.SHA256 = sum
	return out, nil
}

// verifyReads is how many times UploadImage reads a volume back before it
// reports that its checksum differs from the image's.
const verifyReads = 3

// downloadSHA256 reads n bytes of vol back from the host and returns their
// checksum. go-libvirt's stream download can hang (go-libvirt#241), so it
// runs on a connection of its own that is closed when ctx ends.
func downloadSHA256(ctx context.Context, hosts *hostconn.Hosts, h HostRef, vol libvirt.StorageVol, n int64) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, max(time.Minute, time.Duration(n>>20)*time.Second))
	defer cancel()
	own := hostconn.NewHosts(hosts.Logger)
	defer func() { _ = own.Close() }() // ends a download that hangs, too
	lv, err := own.Conn(dctx, h.URI)
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	done := make(chan error, 1)
	go func() { done <- lv.StorageVolDownload(vol, sum, 0, uint64(n), 0) }()
	select {
	case err := <-done:
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(sum.Sum(nil)), nil
	case <-dctx.Done():
		return "", fmt.Errorf("reading it back: %w", dctx.Err())
	}
}
