{{- define "gemhub.postgresql.password" -}}
{{- include "gemhub.secretValue" (dict "root" . "secret" "gemhub-postgresql" "key" "password" "value" .Values.database.internal.password "length" 32) -}}
{{- end }}

{{- /*
  Init container of a service on the internal PostgreSQL: waits for the server and makes
  the service's database when it is missing (also for a service enabled after install).
*/}}
{{- define "gemhub.postgresql.createDatabase" -}}
{{- $pg := .root.Values.database.internal -}}
- name: create-database
  image: {{ $pg.image.name }}:{{ $pg.image.tag }}
  imagePullPolicy: {{ $pg.image.pullPolicy }}
  command:
    - sh
    - -c
    - >-
      until pg_isready -q; do echo waiting for PostgreSQL; sleep 2; done;
      psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'gemhub_{{ .name }}'" | grep -q 1
      || psql -c 'CREATE DATABASE gemhub_{{ .name }}'
  env:
    - name: PGHOST
      value: gemhub-postgresql
    - name: PGUSER
      value: gemhub
    - name: PGDATABASE
      value: postgres
    - name: PGPASSWORD
      valueFrom:
        secretKeyRef: {name: gemhub-postgresql, key: password}
  securityContext:
    runAsNonRoot: true
    runAsUser: 999
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {memory: 64Mi}
{{- end }}
