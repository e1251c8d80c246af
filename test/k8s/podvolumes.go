package k8s

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fillVolume writes volume v of pod into path as the kubelet would.
func (c *Cluster) fillVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume, path string, fsGroup int64) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	chgrp := func(p string, mode os.FileMode) error {
		if fsGroup >= 0 {
			if err := os.Chown(p, 0, int(fsGroup)); err != nil {
				return err
			}
		}
		return os.Chmod(p, mode)
	}
	write := func(name string, data []byte, mode *int32, defaultMode *int32) error {
		m := os.FileMode(0o644)
		if defaultMode != nil {
			m = os.FileMode(*defaultMode)
		}
		if mode != nil {
			m = os.FileMode(*mode)
		}
		if fsGroup >= 0 {
			m |= 0o040 // the kubelet makes files group-readable for fsGroup
		}
		f := filepath.Join(path, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return err
		}
		return chgrp(f, m)
	}
	project := func(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32) error {
		if len(items) == 0 {
			for k, d := range data {
				if err := write(k, d, nil, defaultMode); err != nil {
					return err
				}
			}
			return nil
		}
		for _, it := range items {
			d, ok := data[it.Key]
			if !ok {
				return fmt.Errorf("no key %s", it.Key)
			}
			if err := write(it.Path, d, it.Mode, defaultMode); err != nil {
				return err
			}
		}
		return nil
	}
	cmData := func(name string) (map[string][]byte, error) {
		cm, err := c.Admin.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		data := map[string][]byte{}
		for k, d := range cm.Data {
			data[k] = []byte(d)
		}
		for k, d := range cm.BinaryData {
			data[k] = d
		}
		return data, nil
	}
	secretData := func(name string) (map[string][]byte, error) {
		s, err := c.Admin.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return s.Data, nil
	}
	switch {
	case v.EmptyDir != nil:
		return chgrp(path, 0o777)
	case v.PersistentVolumeClaim != nil:
		// A fresh volume, given to fsGroup as the kubelet does.
		return chgrp(path, 0o775|os.ModeSetgid)
	case v.ConfigMap != nil:
		data, err := cmData(v.ConfigMap.Name)
		if err != nil {
			return err
		}
		return project(data, v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		data, err := secretData(v.Secret.SecretName)
		if err != nil {
			return err
		}
		return project(data, v.Secret.Items, v.Secret.DefaultMode)
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			var err error
			switch {
			case src.ServiceAccountToken != nil:
				sa := pod.Spec.ServiceAccountName
				exp := int64(3600)
				if src.ServiceAccountToken.ExpirationSeconds != nil {
					exp = *src.ServiceAccountToken.ExpirationSeconds
				}
				req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
					ExpirationSeconds: &exp,
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				}}
				if a := src.ServiceAccountToken.Audience; a != "" {
					req.Spec.Audiences = []string{a}
				}
				var tok *authenticationv1.TokenRequest
				if tok, err = c.Admin.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{}); err == nil {
					err = write(src.ServiceAccountToken.Path, []byte(tok.Status.Token), nil, v.Projected.DefaultMode)
				}
			case src.ConfigMap != nil:
				var data map[string][]byte
				if data, err = cmData(src.ConfigMap.Name); err == nil {
					err = project(data, src.ConfigMap.Items, v.Projected.DefaultMode)
				}
			case src.Secret != nil:
				var data map[string][]byte
				if data, err = secretData(src.Secret.Name); err == nil {
					err = project(data, src.Secret.Items, v.Projected.DefaultMode)
				}
			case src.DownwardAPI != nil:
				for _, it := range src.DownwardAPI.Items {
					if it.FieldRef == nil {
						return fmt.Errorf("downwardAPI %s: only fieldRef is supported", it.Path)
					}
					var val string
					if val, err = podField(pod, it.FieldRef.FieldPath); err == nil {
						err = write(it.Path, []byte(val), it.Mode, v.Projected.DefaultMode)
					}
					if err != nil {
						break
					}
				}
			default:
				return fmt.Errorf("projected source %+v not supported by the stand-in", src)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("volume source not supported by the stand-in: %+v", v.VolumeSource)
}

func (c *Cluster) envSource(ctx context.Context, ns string, ef corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case ef.ConfigMapRef != nil:
		cm, err := c.Admin.CoreV1().ConfigMaps(ns).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		maps.Copy(out, cm.Data)
	case ef.SecretRef != nil:
		s, err := c.Admin.CoreV1().Secrets(ns).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	}
	return out, nil
}

func (c *Cluster) envValueFrom(ctx context.Context, pod *corev1.Pod, from *corev1.EnvVarSource) (string, error) {
	switch {
	case from.FieldRef != nil:
		return podField(pod, from.FieldRef.FieldPath)
	case from.SecretKeyRef != nil:
		s, err := c.Admin.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(s.Data[from.SecretKeyRef.Key]), nil
	case from.ConfigMapKeyRef != nil:
		cm, err := c.Admin.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return cm.Data[from.ConfigMapKeyRef.Key], nil
	}
	return "", fmt.Errorf("valueFrom %+v not supported by the stand-in", from)
}

func podField(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.name":
		return pod.Name, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	}
	return "", fmt.Errorf("fieldRef %s not supported by the stand-in", path)
}
