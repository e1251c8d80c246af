package activities

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/premiscale/premiscale/config"
)

// NewKubernetesClient builds the client for controller.kubernetes: the
// pod's service account (inCluster) or a kubeconfig file and context. It
// returns nil, nil when no cluster is configured.
func NewKubernetesClient(k config.Kubernetes) (kubernetes.Interface, error) {
	var (
		rc  *rest.Config
		err error
	)
	switch {
	case k.InCluster:
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("controller.kubernetes.inCluster: %w", err)
		}
	case k.Kubeconfig != "":
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: k.Kubeconfig}
		if paths := filepath.SplitList(k.Kubeconfig); len(paths) > 1 {
			// A list, as $KUBECONFIG may hold: merged as kubectl merges it.
			rules = &clientcmd.ClientConfigLoadingRules{Precedence: paths}
		}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			rules,
			&clientcmd.ConfigOverrides{CurrentContext: k.Context},
		).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("controller.kubernetes.kubeconfig %s: %w", k.Kubeconfig, err)
		}
	default:
		return nil, nil
	}
	rc.UserAgent = "premiscale"
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controller.kubernetes: %w", err)
	}
	return c, nil
}
