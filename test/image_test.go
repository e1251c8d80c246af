package test

import (
	"archive/tar"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/premiscale/premiscale/test/k8s"
)

// Size budget of the image (README): the compressed layer a registry
// stores and a node pulls, and the binary in it.
const (
	imageBudgetCompressed = 70 << 20
	imageBudgetBinary     = 200 << 20
)

// TestImageIsStaticNonRootAndStamped builds the image as `make image` does
// and inspects the OCI archive: the entrypoint is the binary, the user is
// not root, the state dir is that user's, nothing but the expected files
// is in it (no shell), the binary is static and stripped and reports the
// stamped version, and the sizes fit the budget.
func TestImageIsStaticNonRootAndStamped(t *testing.T) {
	bi := buildImage(t)
	version, img := bi.version, bi.img
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/premiscale"}) || c.Labels["org.opencontainers.image.version"] != version {
		t.Errorf("config: user %q entrypoint %q labels %v", c.User, c.Entrypoint, c.Labels)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !slices.Contains(c.Env, "PREMISCALE_CONTROLLER_STATEDIR=/var/lib/premiscale") {
		t.Errorf("config: %s/%s env %v", cfg.OS, cfg.Architecture, c.Env)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %d, want 1", err, len(layers))
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: compressed layer %.1f MiB (budget %d MiB)", version, float64(size)/(1<<20), imageBudgetCompressed>>20)
	if size > imageBudgetCompressed {
		t.Errorf("compressed layer %d bytes, over the budget of %d", size, imageBudgetCompressed)
	}

	files := map[string]*tar.Header{}
	bin := filepath.Join(t.TempDir(), "premiscale")
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
		if h.Name == "usr/local/bin/premiscale" {
			f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
		}
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"etc", "etc/group", "etc/passwd", "etc/premiscale", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt",
		"tmp", "usr", "usr/local", "usr/local/bin", "usr/local/bin/premiscale", "var", "var/lib", "var/lib/premiscale"}
	if !slices.Equal(names, want) {
		t.Errorf("image files %v, want exactly %v (no shell, nothing else)", names, want)
	}
	if h := files["var/lib/premiscale"]; h == nil || h.Uid != 65532 || h.Mode&0o777 != 0o700 {
		t.Errorf("state dir %+v, want the user's, 0700", h)
	}

	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > imageBudgetBinary {
		t.Errorf("binary %d bytes, over the budget of %d", fi.Size(), imageBudgetBinary)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked (has an interpreter)")
		}
	}
	if ef.Section(".symtab") != nil {
		t.Error("the binary is not stripped (.symtab)")
	}
	_ = ef.Close()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "premiscale "+version {
		t.Errorf("--version: %q %v, want premiscale %s", out, err, version)
	}
}

// builtImage is the image `make image` builds, built once per test run
// and shared: the archive's image, and its root filesystem unpacked with
// owners and modes (for k8s.StartPod) with its config.
type builtImage struct {
	dir     string
	version string
	img     v1.Image
	pod     k8s.Image
	err     error
}

var imageOnce struct {
	sync.Once
	b builtImage
}

func buildImage(t *testing.T) builtImage {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the static binary (minutes)")
	}
	imageOnce.Do(func() {
		b := &imageOnce.b
		b.version = fmt.Sprintf("v0.0.0-imagetest.%d", time.Now().Unix())
		dir, err := os.MkdirTemp("", "premiscale-image-")
		if err != nil {
			b.err = err
			return
		}
		b.dir = dir
		archive := filepath.Join(dir, "premiscale-image.tar")
		cmd := exec.Command("make", "-C", "..", "image", "VERSION="+b.version, "IMAGE="+archive)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("make image: %w", err)
			return
		}
		layoutDir := filepath.Join(dir, "layout")
		if b.err = untarFile(archive, layoutDir); b.err != nil {
			return
		}
		idx, err := layout.ImageIndexFromPath(layoutDir)
		if err != nil {
			b.err = err
			return
		}
		im, err := idx.IndexManifest()
		if err != nil || len(im.Manifests) != 1 {
			b.err = fmt.Errorf("index: %v %+v, want one image", err, im)
			return
		}
		if b.img, b.err = idx.Image(im.Manifests[0].Digest); b.err != nil {
			return
		}
		cfg, err := b.img.ConfigFile()
		if err != nil {
			b.err = err
			return
		}
		root := filepath.Join(dir, "rootfs")
		rc := mutate.Extract(b.img)
		defer rc.Close()
		if b.err = unpackRootfs(rc, root); b.err != nil {
			return
		}
		c := cfg.Config
		b.pod = k8s.Image{Root: root, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
	})
	if imageOnce.b.err != nil {
		t.Fatal(imageOnce.b.err)
	}
	return imageOnce.b
}

// removeImage removes what buildImage made; TestMain calls it last.
func removeImage() {
	if imageOnce.b.dir != "" {
		_ = os.RemoveAll(imageOnce.b.dir)
	}
}

// unpackRootfs writes a layer's files into dir with their owners and modes,
// as a container runtime's snapshotter does.
func unpackRootfs(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if p != filepath.Clean(dir) && !strings.HasPrefix(p, filepath.Clean(dir)+string(os.PathSeparator)) {
			return fmt.Errorf("layer entry %q escapes", h.Name)
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("layer entry %q: type %c not unpacked", h.Name, h.Typeflag)
		}
		if err := os.Chown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
}

// untarFile unpacks the tar archive at path into dir, as unpackRootfs does.
func untarFile(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	return unpackRootfs(f, dir)
}
