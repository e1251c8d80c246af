// Command image builds PremiScale's container image without a container
// daemon or a base image: one layer holding the static binary, the CA
// bundle, a non-root user and its state directory, written as an OCI
// image layout in a tar file (an "oci-archive", which podman, skopeo,
// crane and containerd import).
//
//	go run ./deploy/image -binary bin/premiscale-linux-amd64 -version v1.2.3 -out bin/premiscale-image.tar
//
// ko would do the same from a registry's base image; there is no registry
// here, so the image is built from scratch with go-containerregistry, the
// library ko is made of.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user, paths and ports.
const (
	UID        = 65532
	BinaryPath = "usr/local/bin/premiscale"
	StateDir   = "var/lib/premiscale"
	ConfigPath = "/etc/premiscale/config.yaml"
)

func main() {
	binary := flag.String("binary", "", "static premiscale binary to put in the image (required)")
	version := flag.String("version", "dev", "version label (the binary's own is stamped at build)")
	out := flag.String("out", "", "OCI archive to write (required)")
	caFile := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for TLS to Temporal, Prometheus and Kubernetes (empty: none)")
	flag.Parse()
	if *binary == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "image: -binary and -out are required")
		os.Exit(2)
	}
	if err := build(*binary, *version, *caFile, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(binary, version, caFile, out string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("-binary: %w", err)
	}
	var ca []byte
	if caFile != "" {
		if ca, err = os.ReadFile(caFile); err != nil {
			return fmt.Errorf("-ca-bundle: %w", err)
		}
	}
	layerTar, err := rootfs(bin, ca)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cfg.Config.User = fmt.Sprintf("%d:%d", UID, UID)
	cfg.Config.Entrypoint = []string{"/" + BinaryPath}
	cfg.Config.Cmd = []string{"--config", ConfigPath}
	cfg.Config.WorkingDir = "/" + StateDir
	cfg.Config.Env = []string{
		"PREMISCALE_CONTROLLER_STATEDIR=/" + StateDir,
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
	}
	cfg.Config.ExposedPorts = map[string]struct{}{"7233/tcp": {}, "9464/tcp": {}, "8086/tcp": {}}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "premiscale",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.source":      "https://github.com/premiscale/premiscale",
		"org.opencontainers.image.description": "Autoscaling groups of libvirt/KVM virtual machines, driven by Temporal",
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".image-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
	})); err != nil {
		return err
	}
	return tarDir(dir, out)
}

// rootfs is the image's one layer: the binary, the CA bundle, the user and
// group files naming the non-root user, and its state directory. No shell,
// no package manager, nothing else.
func rootfs(bin, ca []byte) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	epoch := time.Unix(0, 0)
	dir := func(name string, uid int, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch})
	}
	file := func(name string, data []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0, 0o755) },
		func() error { return dir("etc/premiscale", 0, 0o755) },
		func() error {
			return file("etc/passwd", fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\npremiscale:x:%d:%d:PremiScale:/%s:/sbin/nologin\n", UID, UID, StateDir), 0o644)
		},
		func() error { return file("etc/group", fmt.Appendf(nil, "root:x:0:\npremiscale:x:%d:\n", UID), 0o644) },
		func() error { return dir("tmp", 0, 0o1777) },
		func() error { return dir("usr", 0, 0o755) },
		func() error { return dir("usr/local", 0, 0o755) },
		func() error { return dir("usr/local/bin", 0, 0o755) },
		func() error { return file(BinaryPath, bin, 0o755) },
		func() error { return dir("var", 0, 0o755) },
		func() error { return dir("var/lib", 0, 0o755) },
		func() error { return dir(StateDir, UID, 0o700) },
	}
	if ca != nil {
		steps = append(steps,
			func() error { return dir("etc/ssl", 0, 0o755) },
			func() error { return dir("etc/ssl/certs", 0, 0o755) },
			func() error { return file("etc/ssl/certs/ca-certificates.crt", ca, 0o644) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// tarDir writes dir's files into the tar file out (written beside and
// renamed, so out is never half written).
func tarDir(dir, out string) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = time.Unix(0, 0), 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(path)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}
