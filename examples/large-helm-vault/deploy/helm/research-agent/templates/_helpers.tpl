{{/* Names, labels and the pieces every pod shares. Helpers are prefixed "agentgen." (not the chart
name) so that these templates are the same for every generated chart. */}}

{{- define "agentgen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentgen.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentgen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentgen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentgen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentgen.labels" -}}
helm.sh/chart: {{ include "agentgen.chart" . }}
{{ include "agentgen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agentgen.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{- define "agentgen.secretName" -}}
{{- default (printf "%s-secrets" (include "agentgen.fullname" .)) .Values.secrets.name }}
{{- end }}

{{/* Annotation that tolerates checkov's CKV_K8S_43 while the image has no digest (and says why). */}}
{{- define "agentgen.digestSkip" -}}
{{- if not .Values.image.digest }}
checkov.io/skip1: "CKV_K8S_43=No image digest was given: set image.digest to pin the image"
{{- end }}
{{- end }}

{{- define "agentgen.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "agentgen.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
{{- end }}

{{- define "agentgen.jobResources" -}}
requests:
  cpu: 100m
  memory: 256Mi
limits:
  cpu: 500m
  memory: 512Mi
{{- end }}

{{- define "agentgen.appVolumeMounts" -}}
- name: secrets
  mountPath: /run/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "agentgen.appVolumes" -}}
- name: secrets
  secret:
    secretName: {{ include "agentgen.secretName" . }}
    defaultMode: 0440
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{/* Rules across values that a JSON schema cannot express. */}}
{{- define "agentgen.validateValues" -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas" }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- $floor := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- if ge (int .Values.podDisruptionBudget.minAvailable) (int $floor) }}
{{- fail "podDisruptionBudget.minAvailable must be lower than the minimum replica count, or no node could ever be drained" }}
{{- end }}
{{- end }}
{{- end }}
