{{/*
PROVISIONAL until manifests/rbac.yaml lands: the operator's rules, split by scope.
*/}}
{{- define "portfolio-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{- define "portfolio-operator.namespacedRules" -}}
- apiGroups: [portfolio.example.org]
  resources: [portfolioanalyses]
  verbs: [get, list, watch, patch]
- apiGroups: [portfolio.example.org]
  resources: [portfolioanalyses/status]
  verbs: [get, patch]
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters, daskautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch, update, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
