// Command cluster runs the test suite's real Kubernetes control plane (see
// package k8s) and leaves it running until interrupted, for manual work
// against it: `make cluster`, then `export KUBECONFIG=<printed path>`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/premiscale/premiscale/test/k8s"
)

func main() {
	dir := flag.String("dir", ".premiscale/k8s", "directory for the cluster's certificates, kubeconfigs, etcd data and logs (emptied first)")
	flag.Parse()
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatal(err)
	}
	if err := os.RemoveAll(abs); err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := k8s.Start(ctx, abs)
	if err != nil {
		fatal(err)
	}
	defer c.Stop()
	fmt.Printf("Kubernetes API server %s is ready (logs in %s).\n", c.Server, abs)
	fmt.Printf("  export KUBECONFIG=%s\n", c.Kubeconfig)
	fmt.Printf("  kubeadm discovery hash: %s\n", c.CAHash)
	fmt.Println("Nodes annotated kwok.x-k8s.io/node=fake get a simulated kubelet. Ctrl-C stops it all.")
	<-ctx.Done()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}
