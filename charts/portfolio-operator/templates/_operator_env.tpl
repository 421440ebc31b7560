{{/*
The operator's settings, as the PORTFOLIO_OPERATOR_* environment variables that
portfolio_operator.config.OperatorConfig.from_env reads.
*/}}
{{- define "portfolio-operator.operatorEnv" -}}
- name: PORTFOLIO_OPERATOR_NAMESPACES
  value: {{ join "," .Values.operator.watchNamespaces | quote }}
- name: PORTFOLIO_OPERATOR_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: PORTFOLIO_OPERATOR_HEALTH_PORT
  value: {{ .Values.operator.healthPort | quote }}
- name: PORTFOLIO_OPERATOR_METRICS_PORT
  value: {{ .Values.operator.metricsPort | quote }}
- name: PORTFOLIO_OPERATOR_MAX_CONCURRENT_ANALYSES
  value: {{ .Values.operator.maxConcurrentAnalyses | quote }}
- name: PORTFOLIO_OPERATOR_WORKER_IMAGE
  value: {{ default (include "portfolio-operator.image" .) .Values.analysis.workerImage | quote }}
- name: PORTFOLIO_OPERATOR_ALLOWED_IMAGES
  value: {{ join "," .Values.analysis.allowedImages | quote }}
{{- with .Values.operator.leaderElection }}
- name: PORTFOLIO_OPERATOR_LEADER_ELECTION
  value: {{ .enabled | quote }}
{{- if .enabled }}
- name: PORTFOLIO_OPERATOR_LEADER_ELECTION_NAMESPACE
  value: {{ $.Release.Namespace | quote }}
- name: PORTFOLIO_OPERATOR_LEADER_ELECTION_LEASE
  value: {{ include "portfolio-operator.fullname" $ | quote }}
- name: PORTFOLIO_OPERATOR_LEASE_DURATION_SECONDS
  value: {{ .leaseDurationSeconds | quote }}
- name: PORTFOLIO_OPERATOR_RENEW_DEADLINE_SECONDS
  value: {{ .renewDeadlineSeconds | quote }}
- name: PORTFOLIO_OPERATOR_RETRY_PERIOD_SECONDS
  value: {{ .retryPeriodSeconds | quote }}
{{- end }}
{{- end }}
# The pod's name (the Lease holder identity) and namespace, from the downward API.
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- with .Values.analysis.prefectApiUrl }}
- name: PREFECT_API_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
