{{- /* The claim name of "workspaces" or "datasets": (dict "root" $ "which" "datasets") */}}
{{- define "gemhub.claim" -}}
{{- $s := index .root.Values.storage .which -}}
{{- $s.existingClaim | default (printf "gemhub-%s" .which) -}}
{{- end }}

{{- /* The Secret holding each service's DSN (key: the service's name). */}}
{{- define "gemhub.databaseSecret" -}}
{{- if and (eq .Values.database.type "external") .Values.database.external.existingSecret -}}
{{ .Values.database.external.existingSecret }}
{{- else -}}
gemhub-database
{{- end -}}
{{- end }}
