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
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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
	if testing.Short() {
		t.Skip("builds the static binary (minutes)")
	}
	version := fmt.Sprintf("v0.0.0-imagetest.%d", time.Now().Unix())
	archive := filepath.Join(t.TempDir(), "premiscale-image.tar")
	cmd := exec.Command("make", "-C", "..", "image", "VERSION="+version, "IMAGE="+archive)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make image: %v", err)
	}
	dir := t.TempDir()
	untar(t, archive, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %v %+v, want one image", err, im)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
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

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(os.PathSeparator)) {
			t.Fatalf("archive entry %q escapes", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		w, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
	}
}
