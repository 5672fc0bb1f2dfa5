{{- /*
  Least privilege per component. A service without Kubernetes work (data, ssh, billing)
  gets no token at all (automountServiceAccountToken: false). The hub's own RBAC
  (pods, PVCs, events in the namespace) is z2jh's.
*/}}

{{- /* A Role (namespace) or ClusterRole bound to gemhub-<component>'s ServiceAccount. */}}
{{- define "gemhub.rbac.bind" -}}
{{- $root := .root }}
{{- $cluster := .cluster | default false }}
{{- $kind := ternary "ClusterRole" "Role" $cluster }}
{{- $name := ternary (printf "gemhub-%s-%s-%s" $root.Release.Namespace .component .purpose) (printf "gemhub-%s-%s" .component .purpose) $cluster }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $kind }}
metadata:
  name: {{ $name }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
rules:
  {{- toYaml .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $kind }}Binding
metadata:
  name: {{ $name }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
subjects:
  - kind: ServiceAccount
    name: gemhub-{{ .component }}
    namespace: {{ $root.Release.Namespace }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $kind }}
  name: {{ $name }}
{{- end }}

{{- /*
  kueue.enabled: the quota service mirrors workspaces' quotas into Kueue. It applies the
  cluster-scoped ResourceFlavors, ClusterQueues and WorkloadPriorityClasses, and the
  LocalQueues in this namespace (where users' pods and jobs run). Nothing else.
*/}}
{{- define "gemhub.kueue.rbac" -}}
{{- if and .Values.kueue.enabled .Values.services.quota.enabled }}
{{- $verbs := list "get" "list" "watch" "create" "update" "patch" "delete" }}
{{- include "gemhub.rbac.bind" (dict "root" . "component" "quota" "purpose" "kueue" "cluster" true "rules" (list
      (dict "apiGroups" (list "kueue.x-k8s.io") "resources" (list "resourceflavors" "clusterqueues" "workloadpriorityclasses") "verbs" $verbs))) }}
{{- include "gemhub.rbac.bind" (dict "root" . "component" "quota" "purpose" "kueue" "rules" (list
      (dict "apiGroups" (list "kueue.x-k8s.io") "resources" (list "localqueues") "verbs" $verbs))) }}
{{- end }}
{{- end }}

{{- /*
  The jobs service submits, watches, suspends (Kueue) and deletes the enabled workload
  kinds in this namespace, and reads their pods, logs and events. With Kueue it also reads
  Workloads (queue position and admission).
*/}}
{{- define "gemhub.jobs.rbac" -}}
{{- if .Values.services.jobs.enabled }}
{{- $k := .Values.jobKinds }}
{{- $verbs := list "get" "list" "watch" "create" "patch" "delete" }}
{{- $rules := list }}
{{- if $k.trainJob }}
{{- $rules = append $rules (dict "apiGroups" (list "trainer.kubeflow.org") "resources" (list "trainjobs") "verbs" $verbs) }}
{{- $rules = append $rules (dict "apiGroups" (list "trainer.kubeflow.org") "resources" (list "trainingruntimes") "verbs" (list "get" "list" "watch")) }}
{{- end }}
{{- $kubeflow := list }}
{{- if $k.pytorchJob }}{{ $kubeflow = append $kubeflow "pytorchjobs" }}{{ end }}
{{- if $k.tfJob }}{{ $kubeflow = append $kubeflow "tfjobs" }}{{ end }}
{{- if $k.mpiJob }}{{ $kubeflow = append $kubeflow "mpijobs" }}{{ end }}
{{- if $kubeflow }}
{{- $rules = append $rules (dict "apiGroups" (list "kubeflow.org") "resources" $kubeflow "verbs" $verbs) }}
{{- end }}
{{- if $k.volcanoJob }}
{{- $rules = append $rules (dict "apiGroups" (list "batch.volcano.sh") "resources" (list "jobs") "verbs" $verbs) }}
{{- end }}
{{- if $k.batchJob }}
{{- $rules = append $rules (dict "apiGroups" (list "batch") "resources" (list "jobs") "verbs" $verbs) }}
{{- end }}
{{- $rules = append $rules (dict "apiGroups" (list "") "resources" (list "pods" "events") "verbs" (list "get" "list" "watch")) }}
{{- $rules = append $rules (dict "apiGroups" (list "") "resources" (list "pods/log") "verbs" (list "get")) }}
{{- if .Values.kueue.enabled }}
{{- $rules = append $rules (dict "apiGroups" (list "kueue.x-k8s.io") "resources" (list "workloads") "verbs" (list "get" "list" "watch")) }}
{{- end }}
{{- include "gemhub.rbac.bind" (dict "root" . "component" "jobs" "purpose" "workloads" "rules" $rules) }}
{{- if $k.trainJob }}
{{- include "gemhub.rbac.bind" (dict "root" . "component" "jobs" "purpose" "runtimes" "cluster" true "rules" (list
      (dict "apiGroups" (list "trainer.kubeflow.org") "resources" (list "clustertrainingruntimes") "verbs" (list "get" "list" "watch")))) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* The images service builds images in Kubernetes Jobs (BuildKit rootless or Kaniko)
  and follows their pods' logs. */}}
{{- define "gemhub.images.rbac" -}}
{{- if .Values.services.images.enabled }}
{{- include "gemhub.rbac.bind" (dict "root" . "component" "images" "purpose" "builds" "rules" (list
      (dict "apiGroups" (list "batch") "resources" (list "jobs") "verbs" (list "get" "list" "watch" "create" "delete"))
      (dict "apiGroups" (list "") "resources" (list "pods") "verbs" (list "get" "list" "watch"))
      (dict "apiGroups" (list "") "resources" (list "pods/log") "verbs" (list "get")))) }}
{{- end }}
{{- end }}
