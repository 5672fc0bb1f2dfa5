{{- /*
  GemHub's names, labels and shared pieces.

  GemHub's objects have fixed names prefixed "gemhub-" (one release per namespace, as z2jh's
  own default names "hub", "proxy-public" assume): the z2jh values in values.yaml refer to
  the gemhub-hub Secret and the gemhub-hub-config ConfigMap by name. z2jh's objects are
  referred to through z2jh's own name templates, so its fullnameOverride keeps working.
*/}}

{{- define "gemhub.labels" -}}
app.kubernetes.io/name: gemhub
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- /* Selector labels of one GemHub component: (dict "root" $ "component" "quota") */}}
{{- define "gemhub.selectorLabels" -}}
app.kubernetes.io/name: gemhub
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- /* Selector of a z2jh pod (its legacy labels, which z2jh's own policies use too). */}}
{{- define "gemhub.z2jhSelector" -}}
app: {{ .root.Values.jupyterhub.nameOverride | default "jupyterhub" }}
release: {{ .root.Release.Name }}
component: {{ .component }}
{{- end }}

{{- define "gemhub.image" -}}
{{ .Values.image.name }}:{{ .Values.image.tag }}
{{- end }}

{{- /* The hub's in-cluster API URL, as services and pods reach it. */}}
{{- define "gemhub.hubApiUrl" -}}
http://{{ include "jupyterhub.hub.fullname" . }}:8081{{ include "gemhub.baseUrl" . }}hub/api
{{- end }}

{{- define "gemhub.baseUrl" -}}
{{ .Values.jupyterhub.hub.baseUrl | default "/" | trimSuffix "/" }}/
{{- end }}

{{- /* A service's in-cluster root URL (the hub registers it; its API is under services/<name>/). */}}
{{- define "gemhub.serviceUrl" -}}
{{- $svc := index .root.Values.services .name -}}
http://gemhub-{{ .name }}:{{ $svc.port }}
{{- end }}

{{- /*
  A secret value kept across upgrades: the given value, else the one already in the
  cluster's Secret, else a new random one. (dict "root" $ "secret" NAME "key" KEY "value" V
  "length" N)
*/}}
{{- define "gemhub.secretValue" -}}
{{- if .value -}}
{{ .value }}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret | default (dict "data" (dict)) -}}
{{- if hasKey ($existing.data | default dict) .key -}}
{{ index $existing.data .key | b64dec }}
{{- else -}}
{{ randAlphaNum (.length | default 32) }}
{{- end -}}
{{- end -}}
{{- end }}

{{- /* Names of the enabled GemHub services, sorted. */}}
{{- define "gemhub.enabledServices" -}}
{{- $names := list -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled }}{{ $names = append $names $name }}{{ end -}}
{{- end -}}
{{- $names | sortAlpha | toJson -}}
{{- end }}

{{- /* The port users put in ssh commands: the gateway Service's nodePort when it is a
  NodePort Service with a fixed one, else its port. */}}
{{- define "gemhub.ssh.publicPort" -}}
{{- $g := .Values.services.ssh.gateway -}}
{{- if and (eq $g.type "NodePort") $g.nodePort }}{{ $g.nodePort }}{{ else }}{{ $g.port }}{{ end -}}
{{- end }}
