// Command controlplane is the real Kubernetes control plane of the test
// suite in one multi-call binary (as hyperkube once was): the first argument
// names the component, the rest are its own flags.
//
//	controlplane etcd --data-dir ...
//	controlplane kube-apiserver --etcd-servers ...
//	controlplane kube-controller-manager --kubeconfig ...
//	controlplane kube-scheduler --kubeconfig ...
//	controlplane envvars < services.json
//
// envvars prints, one NAME=VALUE a line, the service-link variables the
// kubelet of this release injects into a container for the Services of a
// v1.ServiceList read from stdin (pkg/kubelet/envvars, the kubelet's own
// code), so tests start a pod's process with what a real kubelet gives it.
//
// Nothing here is PremiScale code: each component is the upstream command of
// the pinned release (k8s.io/kubernetes v1.37.2, etcd v3.7.0 as that release
// pins it), linked once instead of four times to save a cold build's minutes.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	_ "time/tzdata" // CronJob time zones, as the upstream mains do

	"go.etcd.io/etcd/server/v3/etcdmain"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/pkg/kubelet/envvars"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler|envvars [flags]")
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]
	switch component {
	case "etcd":
		// etcdmain reads its flags from the argument list it is given,
		// program name first.
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	case "envvars":
		os.Exit(serviceLinks())
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown component %q\n", component)
		os.Exit(2)
	}
	// cobra reads os.Args[1:]: the component's own flags.
	os.Args = append([]string{component}, args...)
	switch component {
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	default:
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	}
}

// serviceLinks prints the kubelet's service-link variables for the
// v1.ServiceList on stdin.
func serviceLinks() int {
	var list corev1.ServiceList
	if err := json.NewDecoder(os.Stdin).Decode(&list); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane envvars: read a v1.ServiceList from stdin: %v\n", err)
		return 2
	}
	services := make([]*corev1.Service, len(list.Items))
	for i := range list.Items {
		services[i] = &list.Items[i]
	}
	for _, e := range envvars.FromServices(services) {
		fmt.Printf("%s=%s\n", e.Name, e.Value)
	}
	return 0
}
