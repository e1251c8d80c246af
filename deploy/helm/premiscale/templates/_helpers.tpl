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

{{/* The pod spec shared by the controller and the workers; .args is the
command line after the image's entrypoint. */}}
{{- define "premiscale.pod" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "premiscale.serviceAccountName" $root }}
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
    ports:
      - {name: metrics, containerPort: {{ $root.Values.metrics.port }}}
      {{- if and .controller $root.Values.clusterAutoscaler.enabled }}
      - {name: externalgrpc, containerPort: {{ $root.Values.clusterAutoscaler.port }}}
      {{- end }}
    livenessProbe:
      httpGet: {path: /healthz, port: metrics}
      periodSeconds: 10
    readinessProbe:
      httpGet: {path: /readyz, port: metrics}
      periodSeconds: 5
    startupProbe:
      httpGet: {path: /healthz, port: metrics}
      periodSeconds: 2
      failureThreshold: 60
    resources: {{- toYaml $root.Values.resources | nindent 6 }}
    securityContext: {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: config, mountPath: /etc/premiscale/config.yaml, subPath: config.yaml, readOnly: true}
      - {name: state, mountPath: /var/lib/premiscale}
      - {name: tmp, mountPath: /tmp}
      {{- if $root.Values.temporal.tlsSecret }}
      - {name: temporal-tls, mountPath: /etc/premiscale/temporal-tls, readOnly: true}
      {{- end }}
      {{- if and .controller $root.Values.clusterAutoscaler.tlsSecret }}
      - {name: autoscaler-tls, mountPath: /etc/premiscale/autoscaler-tls, readOnly: true}
      {{- end }}
volumes:
  - name: config
    configMap: {name: {{ include "premiscale.fullname" $root }}}
  - name: state
    {{- if and .controller (include "premiscale.embedded" $root) }}
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
  {{- if and .controller $root.Values.clusterAutoscaler.tlsSecret }}
  - name: autoscaler-tls
    secret: {secretName: {{ $root.Values.clusterAutoscaler.tlsSecret }}, defaultMode: 0440}
  {{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
