{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "ghlsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "web"). */}}
{{- define "ghlsync.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of one component's objects. */}}
{{- define "ghlsync.labels" -}}
{{ include "ghlsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: ghlsync
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{- define "ghlsync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "ghlsync.secretName" -}}
{{ required "existingSecret is required: the name of a Secret you created with DATABASE_URL, REDIS_URL, GHL_CLIENT_ID, GHL_CLIENT_SECRET and TOKEN_ENCRYPTION_KEY (see secretKeys); the chart never holds secrets" .Values.existingSecret }}
{{- end -}}

{{- define "ghlsync.publicURL" -}}
{{- $u := required "publicURL is required: the origin browsers and GHL reach the web process at, such as https://ghlsync.example.com" .Values.publicURL | trimSuffix "/" -}}
{{- if not (regexMatch "^https?://[^/]+$" $u) -}}
{{- fail (printf "publicURL %q must be an origin only, such as https://ghlsync.example.com (no path)" $u) -}}
{{- end -}}
{{- $u -}}
{{- end -}}

{{/*
The environment of one process: (dict "ctx" $ "secrets" (list VAR ...)
"public" BOOL). Each secret variable comes from existingSecret; the
optional ones may be missing from it, or left out with an empty key. public adds WEB_PUBLIC_URL and
GHL_REDIRECT_URI (the web process's callback, and the redirect_uri every
token refresh sends).
*/}}
{{- define "ghlsync.env" -}}
{{- $ctx := .ctx -}}
{{- $secret := include "ghlsync.secretName" $ctx -}}
{{- $optional := list "TOKEN_ENCRYPTION_OLD_KEYS" "WEB_ADMIN_PASSWORD" -}}
{{- range .secrets }}
{{- $key := get $ctx.Values.secretKeys . }}
{{- if has . $optional }}
{{- if $key }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- else }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ required (printf "secretKeys.%s is required: the key of existingSecret that holds %s" . .) $key }}
{{- end }}
{{- end }}
{{- if get . "public" }}
{{- $url := include "ghlsync.publicURL" $ctx }}
- name: WEB_PUBLIC_URL
  value: {{ $url | quote }}
- name: GHL_REDIRECT_URI
  value: {{ printf "%s/api/auth/callback" $url | quote }}
{{- end }}
{{- range $k, $v := $ctx.Values.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* The pod spec's parts every process shares. */}}
{{- define "ghlsync.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* nodeSelector, tolerations and affinity of one component's values. */}}
{{- define "ghlsync.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A probe of path on the named port. */}}
{{- define "ghlsync.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: 10
timeoutSeconds: 5
failureThreshold: {{ get . "failureThreshold" | default 3 }}
{{- end -}}

{{/*
WORKER_SHUTDOWN_TIMEOUT: the grace period less 10 s for the worker to exit
once its tasks are done (the metrics server's own shutdown may take that).
*/}}
{{- define "ghlsync.workerShutdownSeconds" -}}
{{- $grace := int .Values.worker.terminationGracePeriodSeconds -}}
{{- if lt $grace 35 -}}
{{- fail (printf "worker.terminationGracePeriodSeconds is %d, must be at least 35: the worker's shutdown timeout (WORKER_SHUTDOWN_TIMEOUT, the grace period less 10 s to exit) must be at least 25 s, longer than a token call may take" $grace) -}}
{{- end -}}
{{- sub $grace 10 -}}
{{- end -}}

{{/* The Service the scheduler's metrics are scraped through (KEDA's default query names it). */}}
{{- define "ghlsync.schedulerMetricsService" -}}
{{ include "ghlsync.fullname" . }}-scheduler-metrics
{{- end -}}
