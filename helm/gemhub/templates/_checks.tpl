{{- /* Combinations of values that would install but not work: refused with the keys named. */}}
{{- define "gemhub.checks" -}}
{{- $profile := .Values.accelerators.profile }}
{{- if and (ne $profile "native") .Values.jupyterhub.scheduling.userScheduler.enabled }}
{{- fail (printf "accelerators.profile %s needs its own scheduler for GPU pods: set jupyterhub.scheduling.userScheduler.enabled to false (z2jh's user-scheduler would replace it)" $profile) }}
{{- end }}
{{- $names := list }}
{{- range .Values.platform.presets }}{{ $names = append $names .name }}{{ end }}
{{- if not (has .Values.platform.defaultPreset $names) }}
{{- fail (printf "platform.defaultPreset %s is not one of platform.presets (%s)" .Values.platform.defaultPreset (join ", " $names)) }}
{{- end }}
{{- if and (eq .Values.platform.auth.type "native") (hasKey .Values.platform.auth "oauth") .Values.platform.auth.oauth }}
{{- fail "platform.auth.oauth is set but platform.auth.type is native: set platform.auth.type to github or generic" }}
{{- end }}
{{- $clientSecretFrom := dig "hub" "extraEnv" "GEMHUB_OAUTH_CLIENT_SECRET" "valueFrom" "secretKeyRef" "name" "" (.Values.jupyterhub | toJson | fromJson) }}
{{- if and (ne .Values.platform.auth.type "native") (not .Values.platform.auth.oauthClientSecret) (eq $clientSecretFrom "gemhub-hub") }}
{{- fail (printf "platform.auth.type %s needs platform.auth.oauthClientSecret (or jupyterhub.hub.extraEnv.GEMHUB_OAUTH_CLIENT_SECRET pointing at a Secret of yours)" .Values.platform.auth.type) }}
{{- end }}
{{- end }}
