{{/*
PROVISIONAL until portfolio_operator's settings land: the operator's configuration as environment.
*/}}
{{- define "portfolio-operator.operatorEnv" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: PORTFOLIO_OPERATOR_NAMESPACES
  value: {{ join "," .Values.operator.watchNamespaces | quote }}
- name: PORTFOLIO_OPERATOR_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: PORTFOLIO_OPERATOR_HEALTH_PORT
  value: {{ .Values.operator.healthPort | quote }}
- name: PORTFOLIO_OPERATOR_METRICS_PORT
  value: {{ .Values.operator.metricsPort | quote }}
- name: PORTFOLIO_OPERATOR_WORKER_IMAGE
  value: {{ default (include "portfolio-operator.image" .) .Values.analysis.workerImage | quote }}
- name: PORTFOLIO_OPERATOR_MIN_WORKERS
  value: {{ .Values.analysis.minWorkers | quote }}
- name: PORTFOLIO_OPERATOR_MAX_WORKERS
  value: {{ .Values.analysis.maxWorkers | quote }}
{{- with .Values.analysis.prefectApiUrl }}
- name: PREFECT_API_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
