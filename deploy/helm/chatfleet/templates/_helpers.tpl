{{/* Names and labels. */}}
{{- define "chatfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "chatfleet.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "chatfleet.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* chatfleet.component: the full name of a component; dict "root" . "component" "worker". */}}
{{- define "chatfleet.component" -}}
{{- printf "%s-%s" (include "chatfleet.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatfleet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "chatfleet.labels" -}}
{{ include "chatfleet.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "chatfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret the chart makes from nats.credentials.user/password. */}}
{{- define "chatfleet.natsSecret" -}}
{{- printf "%s-nats" (include "chatfleet.fullname" .) -}}
{{- end -}}

{{/*
chatfleet.natsEnvFrom: the envFrom entries of a component's NATS
credentials; dict "root" . "own" .Values.worker.natsCredentials.
*/}}
{{- define "chatfleet.natsEnvFrom" -}}
{{- $creds := .root.Values.nats.credentials -}}
{{- if .own.envSecret }}
- secretRef:
    name: {{ .own.envSecret }}
{{- else if $creds.envSecret }}
- secretRef:
    name: {{ $creds.envSecret }}
{{- else if $creds.user }}
- secretRef:
    name: {{ include "chatfleet.natsSecret" .root }}
{{- end }}
{{- end -}}

{{/* The files Secret of a component's NATS credentials, if any. */}}
{{- define "chatfleet.natsFilesSecret" -}}
{{- default .root.Values.nats.credentials.filesSecret .own.filesSecret -}}
{{- end -}}

{{/* chatfleet.env: the env entries every chatfleet container shares. */}}
{{- define "chatfleet.env" -}}
- name: CHATFLEET_NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: CHATFLEET_HTTP_ADDR
  value: {{ printf ":%d" (int .Values.metricsPort) | quote }}
{{- range $name, $value := .Values.fleet }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- with .Values.nats.tls.secret }}
- name: CHATFLEET_NATS_TLS_CA
  value: /etc/chatfleet/nats-tls/ca.crt
{{- if $.Values.nats.tls.clientCertificate }}
- name: CHATFLEET_NATS_TLS_CERT
  value: /etc/chatfleet/nats-tls/tls.crt
- name: CHATFLEET_NATS_TLS_KEY
  value: /etc/chatfleet/nats-tls/tls.key
{{- end }}
{{- end }}
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
chatfleet.natsVolumeMounts / natsVolumes: TLS and credential files; dict
"root" . "own" …, and "name" for a second identity in the same pod (the
gateway's init container runs as the operators): its credentials volume
is named after it, and the TLS volume is the first identity's.
*/}}
{{- define "chatfleet.natsCredentialsVolume" -}}
{{- if .name }}nats-credentials-{{ .name }}{{ else }}nats-credentials{{ end -}}
{{- end -}}

{{- define "chatfleet.natsVolumeMounts" -}}
{{- if .root.Values.nats.tls.secret }}
- name: nats-tls
  mountPath: /etc/chatfleet/nats-tls
  readOnly: true
{{- end }}
{{- if include "chatfleet.natsFilesSecret" . }}
- name: {{ include "chatfleet.natsCredentialsVolume" . }}
  mountPath: /etc/chatfleet/nats
  readOnly: true
{{- end }}
{{- end -}}

{{- define "chatfleet.natsVolumes" -}}
{{- if not .name }}
{{- with .root.Values.nats.tls.secret }}
- name: nats-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}
{{- with include "chatfleet.natsFilesSecret" . }}
- name: {{ include "chatfleet.natsCredentialsVolume" $ }}
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{/* chatfleet.metricsPort: the probe and metrics port of a container. */}}
{{- define "chatfleet.metricsPort" -}}
- name: http
  containerPort: {{ .Values.metricsPort }}
  protocol: TCP
{{- end -}}

{{/* The podAntiAffinity term that spreads a component's pods over nodes. */}}
{{- define "chatfleet.antiAffinityTerm" -}}
labelSelector:
  matchLabels:
    {{- include "chatfleet.selectorLabels" . | nindent 4 }}
topologyKey: kubernetes.io/hostname
{{- end -}}

{{/* chatfleet.baseEgress: what every chatfleet pod reaches: DNS, NATS and, when set, the OTLP endpoint. */}}
{{- define "chatfleet.baseEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- to:
    - podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.nats.podSelector | nindent 10 }}
      {{- with .Values.networkPolicy.nats.namespaceSelector }}
      namespaceSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
  ports:
    - port: {{ .Values.networkPolicy.nats.port }}
      protocol: TCP
{{- if .Values.otel.endpoint }}
- ports:
    - port: {{ .Values.networkPolicy.otelPort }}
      protocol: TCP
{{- end }}
{{- end -}}
{{/* chatfleet.metricsIngress: Prometheus scraping /metrics. */}}
{{- define "chatfleet.metricsIngress" -}}
- from:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.prometheus.namespaceSelector | nindent 10 }}
  ports:
    - port: http
      protocol: TCP
{{- end -}}

{{/* The ConfigMap holding the upstreams file, and where workers mount it and its keys. */}}
{{- define "chatfleet.upstreamsConfigMap" -}}
{{- printf "%s-upstreams" (include "chatfleet.fullname" .) -}}
{{- end -}}

{{/*
chatfleet.upstreamsEnv / upstreamsVolumeMounts / upstreamsVolumes: the
upstream's fleet-wide limits, and the upstreams file with its keys.
*/}}
{{- define "chatfleet.upstreamsEnv" -}}
{{- $limits := .Values.upstream.fleetLimits }}
- name: CHATFLEET_FLEET_MAX_LLM_STREAMS
  value: {{ $limits.maxStreams | int64 | quote }}
- name: CHATFLEET_FLEET_REQUESTS_PER_MINUTE
  value: {{ $limits.requestsPerMinute | int64 | quote }}
- name: CHATFLEET_FLEET_TOKENS_PER_MINUTE
  value: {{ $limits.tokensPerMinute | int64 | quote }}
{{- if .Values.upstreams.list }}
- name: CHATFLEET_UPSTREAMS
  value: /etc/chatfleet/upstreams/upstreams.json
{{- end }}
{{- end -}}

{{- define "chatfleet.upstreamsVolumeMounts" -}}
{{- if .Values.upstreams.list }}
- name: upstreams
  mountPath: /etc/chatfleet/upstreams
  readOnly: true
{{- end }}
{{- if .Values.upstreams.keysSecret }}
- name: upstream-keys
  mountPath: /etc/chatfleet/upstream-keys
  readOnly: true
{{- end }}
{{- end -}}

{{- define "chatfleet.upstreamsVolumes" -}}
{{- if .Values.upstreams.list }}
- name: upstreams
  configMap:
    name: {{ include "chatfleet.upstreamsConfigMap" . }}
{{- end }}
{{- with .Values.upstreams.keysSecret }}
- name: upstream-keys
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{/*
chatfleet.upstreamsPorts: the ports of the upstreams file's base URLs (an
explicit port, else 443 or 80 by scheme), as a JSON list: what the
workers' NetworkPolicy opens for them.
*/}}
{{- define "chatfleet.upstreamsPorts" -}}
{{- $ports := list -}}
{{- range .Values.upstreams.list -}}
{{- $url := urlParse .base_url -}}
{{- $port := ternary "443" "80" (eq $url.scheme "https") -}}
{{- if contains ":" $url.host }}{{ $port = last (splitList ":" $url.host) }}{{ end -}}
{{- $ports = append $ports ($port | int) -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}
