{{- /*
  One GemHub service (gemhub.services.<name>.app): ServiceAccount, Deployment, Service,
  NetworkPolicy, and HorizontalPodAutoscaler / PodDisruptionBudget when it runs replicas.
  Every service gets the same environment: the JUPYTERHUB_* variables a hub-managed service
  would get (its API token from z2jh's hub Secret), GEMHUB_DATABASE_URL and
  GEMHUB_COOKIE_SECRET from Secrets. Secrets never go on the command line.

  Called from templates/<name>.yaml as
    include "gemhub.service" (dict "root" $ "name" "quota" ...options)
  options:
    args         list: the service's own command-line settings (non-secret)
    env          list: more env entries (may use valueFrom)
    mounts       list: "workspaces" (claim at /srv/gemhub/workspaces), "datasets" (claim at /srv/gemhub)
    volumes, volumeMounts, ports, extraIngress: lists added as they are
    callers      list: other GemHub services that call this one (NetworkPolicy)
    kubeApi      bool: mount a ServiceAccount token (the service calls the Kubernetes API)
*/}}
{{- define "gemhub.service" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := index $root.Values.services $name -}}
{{- $defaults := $root.Values.serviceDefaults -}}
{{- $full := printf "gemhub-%s" $name -}}
{{- $base := include "gemhub.baseUrl" $root -}}
{{- $prefix := printf "%sservices/%s/" $base $name -}}
{{- $mounts := .mounts | default list -}}
{{- if $svc.enabled }}
{{- if not (hasKey ($root.Values.jupyterhub.hub.services | default dict) $name) }}
{{- fail (printf "services.%s is enabled but jupyterhub.hub.services.%s is missing: add `%s: {}` there so z2jh makes its API token" $name $name $name) }}
{{- end }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $full }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
automountServiceAccountToken: {{ .kubeApi | default false }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  {{- if le (int $svc.autoscaling.maxReplicas) 1 }}
  {{- if le (int $svc.replicas) 1 }}
  # a single replica: never two side by side during a rollout
  strategy:
    type: Recreate
  {{- end }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "gemhub.selectorLabels" (dict "root" $root "component" $name) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "gemhub.selectorLabels" (dict "root" $root "component" $name) | nindent 8 }}
        # z2jh's hub NetworkPolicy admits pods with this label to the hub API
        hub.jupyter.org/network-access-hub: "true"
        # GemHub's PostgreSQL NetworkPolicy admits pods with this label
        gemhub.io/database-client: "true"
      annotations:
        checksum/database: {{ $root.Values.database | toJson | sha256sum | trunc 16 }}
    spec:
      serviceAccountName: {{ $full }}
      automountServiceAccountToken: {{ .kubeApi | default false }}
      enableServiceLinks: false
      securityContext:
        {{- $svc.podSecurityContext | default $defaults.podSecurityContext | toYaml | nindent 8 }}
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with ($svc.nodeSelector | default $defaults.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($svc.tolerations | default $defaults.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($svc.affinity | default $defaults.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if eq $root.Values.database.type "internal" }}
      initContainers:
        {{- include "gemhub.postgresql.createDatabase" (dict "root" $root "name" $name) | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $name }}
          image: {{ include "gemhub.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - python3
            - -m
            - gemhub.services.{{ $name }}.app
            - --GemService.ip=0.0.0.0
            - --GemService.port={{ $svc.port }}
            # the hub is not this process's parent on Kubernetes
            - --GemService.die_with_hub=False
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            {{- range $svc.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: JUPYTERHUB_SERVICE_NAME
              value: {{ $name }}
            - name: JUPYTERHUB_API_URL
              value: {{ include "gemhub.hubApiUrl" $root | quote }}
            - name: JUPYTERHUB_API_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ include "jupyterhub.hub.fullname" $root }}
                  key: hub.services.{{ $name }}.apiToken
            - name: JUPYTERHUB_CLIENT_ID
              value: service-{{ $name }}
            - name: JUPYTERHUB_BASE_URL
              value: {{ $base | quote }}
            - name: JUPYTERHUB_SERVICE_PREFIX
              value: {{ $prefix | quote }}
            - name: JUPYTERHUB_SERVICE_URL
              value: {{ include "gemhub.serviceUrl" (dict "root" $root "name" $name) | quote }}
            - name: JUPYTERHUB_OAUTH_CALLBACK_URL
              value: {{ printf "%soauth_callback" $prefix | quote }}
            - name: GEMHUB_STATE_DIR
              value: /srv/gemhub
            - name: GEMHUB_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "gemhub.databaseSecret" $root }}
                  key: {{ $name }}
            - name: GEMHUB_COOKIE_SECRET
              valueFrom:
                secretKeyRef:
                  name: gemhub-services
                  key: {{ $name }}-cookie-secret
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- range $k, $v := $svc.extraEnv }}
            - name: {{ $k }}
              value: {{ $v | quote }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $svc.port }}
            {{- with .ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          readinessProbe:
            httpGet:
              path: {{ $prefix }}health
              port: http
            periodSeconds: 10
          livenessProbe:
            httpGet:
              path: {{ $prefix }}health
              port: http
            initialDelaySeconds: 30
            periodSeconds: 20
            failureThreshold: 6
          resources:
            {{- $svc.resources | default $defaults.resources | toYaml | nindent 12 }}
          securityContext:
            {{- $svc.containerSecurityContext | default $defaults.containerSecurityContext | toYaml | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if has "datasets" $mounts }}
            - name: datasets
              mountPath: /srv/gemhub
              {{- with $root.Values.storage.datasets.subPath }}
              subPath: {{ . | quote }}
              {{- end }}
            {{- else }}
            - name: state
              mountPath: /srv/gemhub
            {{- end }}
            {{- if has "workspaces" $mounts }}
            - name: workspaces
              mountPath: /srv/gemhub/workspaces
              subPath: {{ list $root.Values.storage.workspaces.subPath "workspaces" | compact | join "/" | quote }}
            {{- end }}
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- if has "datasets" $mounts }}
        - name: datasets
          persistentVolumeClaim:
            claimName: {{ include "gemhub.claim" (dict "root" $root "which" "datasets") }}
        {{- else }}
        - name: state
          emptyDir: {}
        {{- end }}
        {{- if has "workspaces" $mounts }}
        - name: workspaces
          persistentVolumeClaim:
            claimName: {{ include "gemhub.claim" (dict "root" $root "which" "workspaces") }}
        {{- end }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  type: ClusterIP
  selector:
    {{- include "gemhub.selectorLabels" (dict "root" $root "component" $name) | nindent 4 }}
  ports:
    - name: http
      port: {{ $svc.port }}
      targetPort: http
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $full }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  podSelector:
    matchLabels:
      {{- include "gemhub.selectorLabels" (dict "root" $root "component" $name) | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    # the proxy (users' browsers and API clients under /services/{{ $name }}/), the hub
    # (the spawner, the hub's health checks) and the GemHub services that call this one
    - ports:
        - port: http
      from:
        - podSelector:
            matchLabels:
              {{- include "gemhub.z2jhSelector" (dict "root" $root "component" "proxy") | nindent 14 }}
        - podSelector:
            matchLabels:
              {{- include "gemhub.z2jhSelector" (dict "root" $root "component" "hub") | nindent 14 }}
        {{- range .callers }}
        - podSelector:
            matchLabels:
              {{- include "gemhub.selectorLabels" (dict "root" $root "component" .) | nindent 14 }}
        {{- end }}
    {{- with .extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- if $svc.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $full }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $full }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if or (gt (int $svc.replicas) 1) $svc.autoscaling.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $full }}
  labels:
    {{- include "gemhub.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $name }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "gemhub.selectorLabels" (dict "root" $root "component" $name) | nindent 6 }}
{{- end }}
{{- end }}
{{- end }}
