{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "radwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release-wide prefix. Kept to 40 characters so that "<fullname>-worker-<name>" and the other
component names stay inside the 63-character limit of names and label values.
*/}}
{{- define "radwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>"; call with (dict "root" $ "component" "api"). */}}
{{- define "radwatch.componentName" -}}
{{- printf "%s-%s" (include "radwatch.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "radwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------------- */}}

{{- define "radwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "radwatch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "radwatch.labels" -}}
helm.sh/chart: {{ include "radwatch.chart" .root }}
{{ include "radwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: radwatch
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of every pod of this release, whatever its component (for NetworkPolicy peers). */}}
{{- define "radwatch.releaseSelector" -}}
app.kubernetes.io/name: {{ include "radwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Images ----------------------------------------------------------------------------------- */}}

{{- define "radwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "radwatch.mlflowImage" -}}
{{- if .Values.mlflow.image.repository }}
{{- printf "%s:%s" .Values.mlflow.image.repository (default "latest" .Values.mlflow.image.tag) }}
{{- else }}
{{- include "radwatch.image" . }}
{{- end }}
{{- end }}

{{- define "radwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "radwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Endpoints -------------------------------------------------------------------------------- */}}

{{- define "radwatch.tritonUrl" -}}
{{- if .Values.config.tritonUrl }}
{{- .Values.config.tritonUrl }}
{{- else if .Values.triton.enabled }}
{{- printf "%s:%d" (include "radwatch.componentName" (dict "root" . "component" "triton")) (int .Values.triton.service.httpPort) }}
{{- else }}
{{- fail "triton.enabled=false needs config.tritonUrl (host:port of an external Triton HTTP endpoint)" }}
{{- end }}
{{- end }}

{{- define "radwatch.tritonMetricsUrl" -}}
{{- if .Values.config.tritonMetricsUrl }}
{{- .Values.config.tritonMetricsUrl }}
{{- else if .Values.triton.enabled }}
{{- printf "http://%s:%d/metrics" (include "radwatch.componentName" (dict "root" . "component" "triton")) (int .Values.triton.service.metricsPort) }}
{{- end }}
{{- end }}

{{- define "radwatch.mlflowUri" -}}
{{- if .Values.config.mlflowTrackingUri }}
{{- .Values.config.mlflowTrackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- printf "http://%s:%d" (include "radwatch.componentName" (dict "root" . "component" "mlflow")) (int .Values.mlflow.service.port) }}
{{- else }}
{{- fail "mlflow.enabled=false needs config.mlflowTrackingUri (the external MLflow tracking server)" }}
{{- end }}
{{- end }}

{{/* Secrets ---------------------------------------------------------------------------------- */}}

{{- define "radwatch.secretName" -}}
{{- default (include "radwatch.componentName" (dict "root" . "component" "secrets")) .Values.secrets.existingSecret }}
{{- end }}

{{/* An env entry read from the release Secret; call with (dict "root" $ "env" NAME "key" KEYNAME). */}}
{{- define "radwatch.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "radwatch.secretName" .root }}
      key: {{ .key }}
{{- end }}

{{/* Pods running the radwatch image ------------------------------------------------------------ */}}

{{/* Environment of every radwatch container: the ConfigMap plus the secret settings. */}}
{{- define "radwatch.env" -}}
env:
  {{- include "radwatch.secretEnv" (dict "root" . "env" "RADWATCH_DATABASE_URL" "key" .Values.secrets.keys.databaseUrl) | nindent 2 }}
  {{- include "radwatch.secretEnv" (dict "root" . "env" "RADWATCH_BROKER_URL" "key" .Values.secrets.keys.brokerUrl) | nindent 2 }}
  {{- include "radwatch.secretEnv" (dict "root" . "env" "RADWATCH_PSEUDONYM_KEY" "key" .Values.secrets.keys.pseudonymKey) | nindent 2 }}
  {{- include "radwatch.secretEnv" (dict "root" . "env" "RADWATCH_SESSION_SECRET" "key" .Values.secrets.keys.sessionSecret) | nindent 2 }}
  # Python, torch and matplotlib write caches under $HOME; the root filesystem is read-only.
  - name: HOME
    value: /tmp
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
envFrom:
  - configMapRef:
      name: {{ include "radwatch.componentName" (dict "root" . "component" "config") }}
  {{- with .Values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Writable scratch space: settings.data_dir (beat schedule, caches) and /tmp. */}}
{{- define "radwatch.volumeMounts" -}}
- name: data
  mountPath: {{ .Values.config.dataDir }}
- name: tmp
  mountPath: /tmp
{{- if include "radwatch.sharedModelRepository" . }}
- name: triton-models
  mountPath: /models
{{- end }}
{{- end }}

{{- define "radwatch.volumes" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if include "radwatch.sharedModelRepository" . }}
- name: triton-models
  persistentVolumeClaim:
    claimName: {{ include "radwatch.tritonClaimName" . }}
{{- end }}
{{- end }}

{{/*
"true" when the radwatch pods mount Triton's repository PVC at /models (the path Triton uses
too) and point RADWATCH_TRITON_MODEL_REPOSITORY at it, so `radwatch deploy` run in a pod exports
where Triton loads from; empty otherwise.
*/}}
{{- define "radwatch.sharedModelRepository" -}}
{{- $repo := .Values.triton.modelRepository }}
{{- if and .Values.triton.enabled (eq $repo.type "pvc") $repo.pvc.mountInRadwatch }}true{{ end }}
{{- end }}

{{- define "radwatch.tritonClaimName" -}}
{{- default (include "radwatch.componentName" (dict "root" . "component" "triton-models")) .Values.triton.modelRepository.pvc.existingClaim }}
{{- end }}

{{/* Pod-level fields shared by the radwatch-image pods. */}}
{{- define "radwatch.podCommon" -}}
serviceAccountName: {{ include "radwatch.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* nodeSelector / tolerations / affinity of one component's values block. */}}
{{- define "radwatch.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when the chart-owned configuration changes. */}}
{{- define "radwatch.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret-values: {{ pick .Values.secrets "databaseUrl" "brokerUrl" "pseudonymKey" "sessionSecret" "mlflowBackendStoreUri" "postgresPassword" "redisPassword" | toJson | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Resources plus "nvidia.com/gpu" when gpus > 0; call with (dict "resources" R "gpus" N). */}}
{{- define "radwatch.resources" -}}
{{- $res := deepCopy (default dict .resources) }}
{{- if gt (int .gpus) 0 }}
{{- $limits := default dict $res.limits }}
{{- $_ := set $limits "nvidia.com/gpu" (int .gpus) }}
{{- $_ := set $res "limits" $limits }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* HorizontalPodAutoscaler; call with (dict "root" $ "name" NAME "component" C "cfg" AUTOSCALING). */}}
{{- define "radwatch.hpa" -}}
{{- if gt (int .cfg.minReplicas) (int .cfg.maxReplicas) }}
{{- fail (printf "%s: autoscaling.minReplicas exceeds maxReplicas" .name) }}
{{- end }}
{{- if not (or .cfg.metrics .cfg.targetCPUUtilizationPercentage .cfg.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s: autoscaling needs a CPU or memory target, or metrics" .name) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "radwatch.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ .cfg.minReplicas }}
  maxReplicas: {{ .cfg.maxReplicas }}
  metrics:
  {{- if .cfg.metrics }}
    {{- toYaml .cfg.metrics | nindent 4 }}
  {{- else }}
    {{- if .cfg.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .cfg.targetCPUUtilizationPercentage }}
    {{- end }}
    {{- if .cfg.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ .cfg.targetMemoryUtilizationPercentage }}
    {{- end }}
  {{- end }}
  {{- with .cfg.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* PodDisruptionBudget; call with (dict "root" $ "name" NAME "component" C "cfg" PDB). */}}
{{- define "radwatch.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "radwatch.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ .cfg.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "radwatch.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end }}
