{{/*
Chart name, truncated to the 63 characters a label value may hold.
*/}}
{{- define "portfolio-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else "<release>-<chart>" (just the release
name when it already contains the chart name).
*/}}
{{- define "portfolio-operator.fullname" -}}
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

{{- define "portfolio-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "portfolio-operator.labels" -}}
helm.sh/chart: {{ include "portfolio-operator.chart" . }}
app.kubernetes.io/part-of: portfolio-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end }}

{{/*
Selector labels of the operator's pods (immutable once installed: keep them short and stable).
*/}}
{{- define "portfolio-operator.selectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "portfolio-operator.componentLabels" . }}
{{- end }}

{{/*
What tells the operator's objects apart from the dask-kubernetes controller's (added to labels).
*/}}
{{- define "portfolio-operator.componentLabels" -}}
app.kubernetes.io/name: {{ include "portfolio-operator.name" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "portfolio-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portfolio-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The project image, "<repository>:<tag>" with the tag defaulting to the chart's appVersion.
*/}}
{{- define "portfolio-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Writable volumes (the root file system is read-only) and their mounts, shared by both operators.
*/}}
{{- define "portfolio-operator.writableVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: home
  emptyDir:
    sizeLimit: {{ .Values.homeSizeLimit }}
{{- end }}

{{- define "portfolio-operator.writableVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/portfolio
{{- end }}

{{/*
dask-kubernetes operator: names, labels, image.
*/}}
{{- define "portfolio-operator.dask.fullname" -}}
{{- printf "%s-dask" (include "portfolio-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portfolio-operator.dask.selectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "portfolio-operator.dask.componentLabels" . }}
{{- end }}

{{- define "portfolio-operator.dask.componentLabels" -}}
app.kubernetes.io/name: dask-kubernetes-operator
app.kubernetes.io/component: dask-kubernetes-operator
{{- end }}

{{- define "portfolio-operator.dask.image" -}}
{{- $image := .Values.daskKubernetesOperator.image }}
{{- printf "%s:%s" (default .Values.image.repository $image.repository) (default (default .Chart.AppVersion .Values.image.tag) $image.tag) }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express; fails the install with a message
that says what to change.
*/}}
{{- define "portfolio-operator.validate" -}}
{{- $analysis := .Values.analysis }}
{{- if gt (int $analysis.minWorkers) (int $analysis.maxWorkers) }}
{{- fail (printf "analysis.minWorkers (%d) must not exceed analysis.maxWorkers (%d): lower minWorkers or raise maxWorkers" (int $analysis.minWorkers) (int $analysis.maxWorkers)) }}
{{- end }}
{{- if eq (int .Values.operator.healthPort) (int .Values.operator.metricsPort) }}
{{- fail (printf "operator.healthPort and operator.metricsPort are both %d: give them different ports" (int .Values.operator.healthPort)) }}
{{- end }}
{{- $election := .Values.operator.leaderElection }}
{{- if and $election.enabled (not (and (gt (float64 $election.leaseDurationSeconds) (float64 $election.renewDeadlineSeconds)) (gt (float64 $election.renewDeadlineSeconds) (mulf 1.2 $election.retryPeriodSeconds)))) }}
{{- fail (printf "operator.leaderElection: leaseDurationSeconds (%v) > renewDeadlineSeconds (%v) > 1.2 x retryPeriodSeconds (%v) must hold, so that the old leader has stopped before a standby takes over" $election.leaseDurationSeconds $election.renewDeadlineSeconds $election.retryPeriodSeconds) }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not $election.enabled) }}
{{- fail (printf "replicas is %d but operator.leaderElection.enabled is false: every replica would run every analysis; enable leader election or set replicas=1" (int .Values.replicas)) }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.create is false, so set serviceAccount.name to the existing ServiceAccount the operator should use" }}
{{- end }}
{{- end }}
