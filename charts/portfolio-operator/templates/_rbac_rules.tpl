{{/*
The operator's least-privilege rules: exactly manifests/rbac.yaml's ClusterRole rules, and its
leader-election Role's (tests/chart/test_chart.py compares them). clusterRules are the ones that
only a ClusterRole can grant (none: kopf's CRD/namespace scanning and peering are switched off);
namespacedRules go into the ClusterRole when all namespaces are watched, else into a Role in each
watched namespace.
*/}}
{{- define "portfolio-operator.clusterRules" -}}
{{- end }}

{{- define "portfolio-operator.namespacedRules" -}}
# kopf lists and watches the resources; patch adds/removes its finalizer; delete is
# ttlSecondsAfterFinished.
- apiGroups: [analysis.portfolio-operator.io]
  resources: [portfolioanalyses]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [analysis.portfolio-operator.io]
  resources: [portfolioanalyses/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement admission).
- apiGroups: [analysis.portfolio-operator.io]
  resources: [portfolioanalyses/finalizers]
  verbs: [update]
# The Dask cluster of each analysis (the dask-kubernetes operator does the rest).
- apiGroups: [kubernetes.dask.org]
  resources: [daskclusters, daskautoscalers]
  verbs: [get, create, delete]
# The report ConfigMap: created, or replaced when a resource is re-run; get reads the
# ownerReference first, so a ConfigMap the operator did not create is never replaced.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# The Dask pods, read while a cluster starts: their waiting reasons (image pulls, scheduling,
# crash loops) go into the status. Read only; dask-kubernetes creates and deletes them.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}

{{- /*
Leader election: the operator's own Lease, in the release's namespace only (a Role). create
cannot be limited to a name (it is not known when create is authorized); get and update can.
*/ -}}
{{- define "portfolio-operator.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "portfolio-operator.fullname" . }}]
  verbs: [get, update]
{{- end }}
