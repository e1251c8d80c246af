{{- define "premiscale.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "premiscale.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "premiscale.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "premiscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "premiscale.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "premiscale.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "premiscale.embedded" -}}
{{- if eq .Values.temporal.address "" -}}true{{- end -}}
{{- end -}}

{{/* The pod spec shared by the controller, the workers and the helm test;
.args is the command line after the image's entrypoint, .test makes the
one-shot pod of `helm test` (no probes or ports, its own empty state). */}}
{{- define "premiscale.pod" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "premiscale.serviceAccountName" $root }}
{{- if .test }}
restartPolicy: Never
{{- end }}
# No service links: the kubelet would inject <SERVICE>_PORT and the like for
# every Service of the namespace, and the chart's own Services are named
# after the release (premiscale-metrics gives PREMISCALE_METRICS_*, the
# prefix of PremiScale's config variables). The loader ignores such
# variables anyway; nothing here needs them.
enableServiceLinks: false
# The controller stops its worker and the embedded server within this
# (the systemd unit's TimeoutStopSec): workflows resume from history.
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
containers:
  - name: premiscale
    image: {{ include "premiscale.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: {{- toYaml .args | nindent 6 }}
    env:
      # The config file is a ConfigMap here: secrets come from Secrets
      # (files or variables), never from the file.
      - name: PREMISCALE_CONTROLLER_INLINESECRETS
        value: refuse
      - name: PREMISCALE_CONTROLLER_METRICS_LISTEN
        value: "0.0.0.0:{{ $root.Values.metrics.port }}"
      - name: PREMISCALE_CONTROLLER_STATEDIR
        value: /var/lib/premiscale
      {{- if $root.Values.rbac.create }}
      - name: PREMISCALE_CONTROLLER_KUBERNETES_INCLUSTER
        value: "true"
      {{- end }}
      {{- if $root.Values.temporal.address }}
      - name: PREMISCALE_CONTROLLER_TEMPORAL_ADDRESS
        value: {{ $root.Values.temporal.address | quote }}
      {{- end }}
      - name: PREMISCALE_CONTROLLER_TEMPORAL_NAMESPACE
        value: {{ $root.Values.temporal.namespace | quote }}
      {{- if $root.Values.temporal.tlsSecret }}
      - name: PREMISCALE_CONTROLLER_TEMPORAL_TLS_ENABLED
        value: "true"
      - name: PREMISCALE_CONTROLLER_TEMPORAL_TLS_CAFILE
        value: /etc/premiscale/temporal-tls/ca.crt
      - name: PREMISCALE_CONTROLLER_TEMPORAL_TLS_CERTFILE
        value: /etc/premiscale/temporal-tls/tls.crt
      - name: PREMISCALE_CONTROLLER_TEMPORAL_TLS_KEYFILE
        value: /etc/premiscale/temporal-tls/tls.key
      {{- end }}
      {{- with $root.Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $root.Values.envFrom }}
    envFrom: {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if not .test }}
    ports:
      - {name: metrics, containerPort: {{ $root.Values.metrics.port }}}
      {{- if and .controller $root.Values.clusterAutoscaler.enabled }}
      - {name: externalgrpc, containerPort: {{ $root.Values.clusterAutoscaler.port }}}
      {{- end }}
    livenessProbe:
      httpGet: {path: /healthz, port: metrics}
      periodSeconds: 10
      timeoutSeconds: 5
    # /readyz asks Temporal (bounded at 5 s, telemetry.ReadyTimeout): the
    # probe waits longer, so a slow Temporal reads as "not ready" with its
    # reason, not as a probe timeout that flaps the externalgrpc endpoint.
    readinessProbe:
      httpGet: {path: /readyz, port: metrics}
      periodSeconds: 10
      timeoutSeconds: 8
      failureThreshold: 3
    startupProbe:
      httpGet: {path: /healthz, port: metrics}
      periodSeconds: 2
      failureThreshold: 60
    {{- end }}
    resources: {{- toYaml $root.Values.resources | nindent 6 }}
    securityContext: {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: config, mountPath: /etc/premiscale/config.yaml, subPath: config.yaml, readOnly: true}
      - {name: state, mountPath: /var/lib/premiscale}
      - {name: tmp, mountPath: /tmp}
      {{- if $root.Values.temporal.tlsSecret }}
      - {name: temporal-tls, mountPath: /etc/premiscale/temporal-tls, readOnly: true}
      {{- end }}
      {{- if and .controller (include "premiscale.autoscalerTLSSecret" $root) }}
      - {name: autoscaler-tls, mountPath: /etc/premiscale/autoscaler-tls, readOnly: true}
      {{- end }}
      {{- if $root.Values.hostsSecret }}
      - {name: hosts, mountPath: /etc/premiscale/hosts, readOnly: true}
      {{- end }}
      {{- with $root.Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap: {name: {{ include "premiscale.fullname" $root }}}
  - name: state
    {{- if and .controller (not .test) (include "premiscale.embedded" $root) }}
    persistentVolumeClaim: {claimName: {{ include "premiscale.fullname" $root }}-state}
    {{- else }}
    emptyDir: {}
    {{- end }}
  - name: tmp
    emptyDir: {}
  {{- if $root.Values.temporal.tlsSecret }}
  - name: temporal-tls
    secret: {secretName: {{ $root.Values.temporal.tlsSecret }}, defaultMode: 0440}
  {{- end }}
  {{- if and .controller (include "premiscale.autoscalerTLSSecret" $root) }}
  - name: autoscaler-tls
    secret: {secretName: {{ include "premiscale.autoscalerTLSSecret" $root }}, defaultMode: 0440}
  {{- end }}
  {{- if $root.Values.hostsSecret }}
  - name: hosts
    secret: {secretName: {{ $root.Values.hostsSecret }}, defaultMode: 0440}
  {{- end }}
  {{- with $root.Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.affinity }}
affinity: {{- toYaml $root.Values.affinity | nindent 2 }}
{{- else if $root.Values.avoidManagedNodes }}
# Off the nodes PremiScale itself may drain and delete: every node it
# joins by kubeadm carries premiscale.io/group.
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: premiscale.io/group, operator: DoesNotExist}
{{- end }}
{{- end -}}

{{/* The config file as rendered into the ConfigMap: .Values.config, with
the externalgrpc provider's settings filled in where clusterAutoscaler is
enabled and the config leaves them out (the listen address behind the
Service, the TLS Secret's files as mounted, the allowed clients). */}}
{{- define "premiscale.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if .Values.clusterAutoscaler.enabled -}}
{{- $ctl := dict -}}
{{- if hasKey $cfg "controller" }}{{ $ctl = get $cfg "controller" }}{{ end -}}
{{- $ca := dict -}}
{{- if hasKey $ctl "clusterAutoscaler" }}{{ $ca = get $ctl "clusterAutoscaler" }}{{ end -}}
{{- if not (hasKey $ca "listen") }}{{ $_ := set $ca "listen" (printf "0.0.0.0:%d" (int .Values.clusterAutoscaler.port)) }}{{ end -}}
{{- if include "premiscale.autoscalerTLSSecret" . -}}
{{- if not (hasKey $ca "certFile") }}{{ $_ := set $ca "certFile" "/etc/premiscale/autoscaler-tls/tls.crt" }}{{ end -}}
{{- if not (hasKey $ca "keyFile") }}{{ $_ := set $ca "keyFile" "/etc/premiscale/autoscaler-tls/tls.key" }}{{ end -}}
{{- if not (hasKey $ca "clientCAFile") }}{{ $_ := set $ca "clientCAFile" "/etc/premiscale/autoscaler-tls/ca.crt" }}{{ end -}}
{{- end -}}
{{- if not (hasKey $ca "allowedClients") }}{{ $_ := set $ca "allowedClients" .Values.clusterAutoscaler.allowedClients }}{{ end -}}
{{- $_ := set $ctl "clusterAutoscaler" $ca -}}
{{- $_ := set $cfg "controller" $ctl -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
The Secret with the externalgrpc provider's server certificate, key and
client CA: clusterAutoscaler.tlsSecret, or the one cert-manager fills
when clusterAutoscaler.certManager.enabled.
*/}}
{{- define "premiscale.autoscalerTLSSecret" -}}
{{- $ca := .Values.clusterAutoscaler -}}
{{- if $ca.tlsSecret -}}
{{- $ca.tlsSecret -}}
{{- else if and $ca.enabled $ca.certManager.enabled -}}
{{- include "premiscale.fullname" . }}-externalgrpc-tls
{{- end -}}
{{- end -}}
