{{/*
Names, labels and the small decisions that several templates share.
*/}}

{{- define "scenario-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, or the release name alone when it already contains
the chart name (helm install scenario-exporter ./chart).
*/}}
{{- define "scenario-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The backfill Job (a Job's name is also a label value: 63 characters at most). */}}
{{- define "scenario-exporter.backfillJobName" -}}
{{- printf "%s-backfill" (include "scenario-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scenario-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scenario-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scenario-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scenario-exporter.labels" -}}
helm.sh/chart: {{ include "scenario-exporter.chart" . }}
{{ include "scenario-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "scenario-exporter.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: scenario-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "scenario-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scenario-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "scenario-exporter.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "scenario-exporter.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (include "scenario-exporter.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Where the chart mounts things in the container. */}}
{{- define "scenario-exporter.secretsDir" -}}/etc/scenario-exporter/secrets{{- end }}
{{- define "scenario-exporter.configDir" -}}/etc/scenario-exporter/config{{- end }}
{{- define "scenario-exporter.webDir" -}}/etc/scenario-exporter/web{{- end }}
{{- define "scenario-exporter.tlsDir" -}}/etc/scenario-exporter/tls{{- end }}
{{- define "scenario-exporter.remoteWriteDir" -}}/etc/scenario-exporter/remote-write{{- end }}

{{/*
Credentials mode, after checking that the values do not mix two of them:
"accounts" (several, from the accounts list), "existingSecret" (one, from a
Secret the user manages), "inline" (one, from scenario.apiKey/apiSecret, in a
Secret the chart creates), "demo", or "none" (the pod will explain at start-up
what is missing; NOTES.txt says it too).
*/}}
{{- define "scenario-exporter.credentialsMode" -}}
{{- $inline := or .Values.scenario.apiKey .Values.scenario.apiSecret }}
{{- $modes := list }}
{{- if .Values.accounts }}{{ $modes = append $modes "accounts" }}{{ end }}
{{- if .Values.existingSecret }}{{ $modes = append $modes "existingSecret" }}{{ end }}
{{- if $inline }}{{ $modes = append $modes "scenario.apiKey/apiSecret" }}{{ end }}
{{- if gt (len $modes) 1 }}
{{- fail (printf "credentials: use one of accounts, existingSecret or scenario.apiKey/apiSecret, not %s" (join " and " $modes)) }}
{{- end }}
{{- if and .Values.demo (gt (len $modes) 0) }}
{{- fail (printf "demo: the demo serves a simulated account; remove %s or set demo: false" (first $modes)) }}
{{- end }}
{{- if and $inline (not (and .Values.scenario.apiKey .Values.scenario.apiSecret)) }}
{{- fail "scenario: set both apiKey and apiSecret (or use existingSecret)" }}
{{- end }}
{{- if and .Values.accounts (or .Values.scenario.projectIds (not (kindIs "invalid" .Values.scenario.budgetCreativeUnits))) }}
{{- fail "scenario.projectIds and scenario.budgetCreativeUnits are for the single account: set projectIds and budgetCreativeUnits on each entry of accounts" }}
{{- end }}
{{- if .Values.accounts }}accounts
{{- else if .Values.existingSecret }}existingSecret
{{- else if $inline }}inline
{{- else if .Values.demo }}demo
{{- else }}none
{{- end }}
{{- end }}

{{/* Name of the Secret the chart creates for inline credentials. */}}
{{- define "scenario-exporter.secretName" -}}
{{- include "scenario-exporter.fullname" . }}
{{- end }}

{{/* "true" when the chart creates a Secret for credentials. */}}
{{- define "scenario-exporter.createSecret" -}}
{{- $mode := include "scenario-exporter.credentialsMode" . }}
{{- $needed := eq $mode "inline" }}
{{- range .Values.accounts }}
{{- if .apiSecret }}{{ $needed = true }}{{ end }}
{{- end }}
{{- if $needed }}true{{ end }}
{{- end }}

{{/*
The exporter's YAML configuration file: the config value, plus the accounts
list turned into the exporter's format with each secret read from its mounted
file. Empty when there is nothing to put in it.
*/}}
{{- define "scenario-exporter.configFile" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if hasKey $config "accounts" }}
{{- fail "config.accounts: list accounts in the accounts value, whose secrets the chart mounts as files" }}
{{- end }}
{{- if .Values.accounts }}
{{- $accounts := list }}
{{- $seen := dict }}
{{- range .Values.accounts }}
{{- if hasKey $seen .name }}
{{- fail (printf "accounts: the name %q is used twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- if and .apiSecret .existingSecret }}
{{- fail (printf "accounts[%s]: set apiSecret or existingSecret, not both" .name) }}
{{- end }}
{{- if not (or .apiSecret .existingSecret) }}
{{- fail (printf "accounts[%s]: set existingSecret (a Secret holding the API secret) or apiSecret" .name) }}
{{- end }}
{{- $account := dict "name" .name "api_key" .apiKey "api_secret_file" (printf "%s/%s/api-secret" (include "scenario-exporter.secretsDir" $) .name) }}
{{- with .projectIds }}{{ $_ := set $account "project_ids" . }}{{ end }}
{{- if not (kindIs "invalid" .budgetCreativeUnits) }}{{ $_ := set $account "budget_creative_units" .budgetCreativeUnits }}{{ end }}
{{- $accounts = append $accounts $account }}
{{- end }}
{{- $_ := set $config "accounts" $accounts }}
{{- end }}
{{- if $config }}
{{- toYaml $config }}
{{- end }}
{{- end }}

{{/*
Web configuration (--web.config.file): "inline" (web.config, plus a
tls_server_config pointing at the mounted TLS Secret), "existingSecret", or
empty. Fails on combinations that would serve plain HTTP while the probes and
the ServiceMonitor speak HTTPS, or the other way round.
*/}}
{{- define "scenario-exporter.webConfigMode" -}}
{{- $web := .Values.web }}
{{- $inlineTLS := hasKey ($web.config | default dict) "tls_server_config" }}
{{- if and $web.config $web.existingSecret }}
{{- fail "web: set web.config or web.existingSecret, not both" }}
{{- end }}
{{- if and $inlineTLS (not $web.tls.enabled) }}
{{- fail "web.config has tls_server_config: set web.tls.enabled=true so that probes and the ServiceMonitor use HTTPS" }}
{{- end }}
{{- if and $web.tls.secretName (not $web.tls.enabled) }}
{{- fail "web.tls.secretName is set: set web.tls.enabled=true as well" }}
{{- end }}
{{- if and $web.tls.enabled (not (or $web.tls.secretName $inlineTLS $web.existingSecret)) }}
{{- fail "web.tls.enabled: set web.tls.secretName (a kubernetes.io/tls Secret), or give tls_server_config in web.config or web.existingSecret" }}
{{- end }}
{{- if and $web.healthWithoutAuth (not (or $web.config $web.existingSecret)) }}
{{- fail "web.healthWithoutAuth: only means something with a web config (web.config or web.existingSecret)" }}
{{- end }}
{{- if $web.existingSecret }}existingSecret
{{- else if or $web.config $web.tls.enabled }}inline
{{- end }}
{{- end }}

{{- define "scenario-exporter.webConfigFile" -}}
{{- $config := deepCopy (.Values.web.config | default dict) }}
{{- if and .Values.web.tls.secretName (not (hasKey $config "tls_server_config")) }}
{{- $dir := include "scenario-exporter.tlsDir" . }}
{{- $_ := set $config "tls_server_config" (dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir)) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "scenario-exporter.webConfigSecretName" -}}
{{- if .Values.web.existingSecret }}
{{- .Values.web.existingSecret }}
{{- else }}
{{- printf "%s-web-config" (include "scenario-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "scenario-exporter.scheme" -}}
{{- if .Values.web.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
A probe from its value: an httpGet handler gets the metrics port and the
scheme filled in; any other handler (tcpSocket, exec, grpc) passes unchanged.
*/}}
{{- define "scenario-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if $probe.httpGet }}
{{- $http := $probe.httpGet }}
{{- if not $http.port }}{{ $_ := set $http "port" "http-metrics" }}{{ end }}
{{- if not $http.scheme }}{{ $_ := set $http "scheme" (include "scenario-exporter.scheme" .root) }}{{ end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/*
The exporter's command-line flags, one per line (a YAML list): the Deployment's.
The flags that choose what is read (config file, accounts, period, upstream) come
from the helpers below, which the backfill Job shares; the web flags are the
server's alone.
*/}}
{{- define "scenario-exporter.args" -}}
- --web.listen-address=:{{ .Values.containerPort }}
{{- include "scenario-exporter.configFileArgs" . }}
{{- if include "scenario-exporter.webConfigMode" . }}
- --web.config.file={{ include "scenario-exporter.webDir" . }}/web-config.yml
{{- end }}
{{- if .Values.web.healthWithoutAuth }}
- --web.health-without-auth
{{- end }}
{{- include "scenario-exporter.accountArgs" . }}
{{- include "scenario-exporter.extraArgs" . }}
{{- end }}

{{/*
The flags that make a command read the exporter's configuration as the
Deployment's container does, without the web server's (a YAML list, each item
on a line of its own): what the backfill Job passes after its command.
*/}}
{{- define "scenario-exporter.settingsArgs" -}}
{{- include "scenario-exporter.configFileArgs" . }}
{{- include "scenario-exporter.accountArgs" . }}
{{- include "scenario-exporter.extraArgs" . }}
{{- end }}

{{/* Each of the three helpers below starts every item with a newline. */}}
{{- define "scenario-exporter.configFileArgs" -}}
{{- if include "scenario-exporter.configFile" . }}
- --config.file={{ include "scenario-exporter.configDir" . }}/config.yml
{{- end }}
{{- end }}

{{- define "scenario-exporter.accountArgs" -}}
{{- $mode := include "scenario-exporter.credentialsMode" . -}}
{{- if eq $mode "demo" }}
- --demo
{{- end }}
{{- if and (ne $mode "accounts") (not (kindIs "invalid" .Values.scenario.budgetCreativeUnits)) }}
- --budget.creative-units={{ .Values.scenario.budgetCreativeUnits }}
{{- end }}
{{- if or (eq $mode "inline") (eq $mode "existingSecret") }}
{{- with .Values.scenario.projectIds }}
- --scenario.project-ids={{ join "," . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scenario-exporter.extraArgs" -}}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The environment of the exporter's container (a list of EnvVar; empty when
there is none): the credentials' files, then extraEnv. Shared by the
Deployment and the backfill Job.
*/}}
{{- define "scenario-exporter.env" -}}
{{- $mode := include "scenario-exporter.credentialsMode" . }}
{{- $secretsDir := include "scenario-exporter.secretsDir" . }}
{{- if or (eq $mode "inline") (eq $mode "existingSecret") }}
# Files, re-read at every refresh: a rotated key/secret pair applies without a restart.
- name: SCENARIO_API_KEY_FILE
  value: {{ $secretsDir }}/api-key
- name: SCENARIO_API_SECRET_FILE
  value: {{ $secretsDir }}/api-secret
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The mounts that give the exporter its credentials and config file (a list of
VolumeMount, possibly empty), and their volumes: shared by the Deployment and
the backfill Job.
*/}}
{{- define "scenario-exporter.settingsVolumeMounts" -}}
{{- $mode := include "scenario-exporter.credentialsMode" . }}
{{- if and (ne $mode "demo") (ne $mode "none") }}
# A directory mount, not subPath: kubelet updates the files when the Secret changes.
- name: secrets
  mountPath: {{ include "scenario-exporter.secretsDir" . }}
  readOnly: true
{{- end }}
{{- if include "scenario-exporter.configFile" . }}
- name: config
  mountPath: {{ include "scenario-exporter.configDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "scenario-exporter.settingsVolumes" -}}
{{- $mode := include "scenario-exporter.credentialsMode" . }}
{{- $chartSecret := include "scenario-exporter.secretName" . }}
{{- if and (ne $mode "demo") (ne $mode "none") }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- if eq $mode "existingSecret" }}
      - secret:
          name: {{ .Values.existingSecret }}
          items:
            - key: {{ .Values.existingSecretKeys.apiKey }}
              path: api-key
            - key: {{ .Values.existingSecretKeys.apiSecret }}
              path: api-secret
      {{- else if eq $mode "inline" }}
      - secret:
          name: {{ $chartSecret }}
          items:
            - key: api-key
              path: api-key
            - key: api-secret
              path: api-secret
      {{- else }}
      {{- range .Values.accounts }}
      - secret:
          {{- if .existingSecret }}
          name: {{ .existingSecret }}
          items:
            - key: {{ .existingSecretKey | default "api-secret" }}
              path: {{ .name }}/api-secret
          {{- else }}
          name: {{ $chartSecret }}
          items:
            - key: {{ .name }}.api-secret
              path: {{ .name }}/api-secret
          {{- end }}
      {{- end }}
      {{- end }}
{{- end }}
{{- if include "scenario-exporter.configFile" . }}
- name: config
  configMap:
    name: {{ include "scenario-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/*
Shards (shards > 1): one Deployment, PodDisruptionBudget and Service per shard,
the pods of shard I running --shard=I/N and labelled with the shard label.
*/}}
{{- define "scenario-exporter.shardLabel" -}}scenario-exporter/shard{{- end }}

{{/* "true" with more than one shard. */}}
{{- define "scenario-exporter.sharded" -}}
{{- if gt (int .Values.shards) 1 }}true{{ end }}
{{- end }}

{{/*
The name of shard .index's objects: <fullname>-shard-<index>, the full name
shortened so that the whole stays a 63-character DNS label (a Service's name).
Takes (dict "root" $ "index" I).
*/}}
{{- define "scenario-exporter.shardName" -}}
{{- $suffix := printf "-shard-%d" (int .index) }}
{{- printf "%s%s" (include "scenario-exporter.fullname" .root | trunc (sub 63 (len $suffix) | int) | trimSuffix "-") $suffix }}
{{- end }}

{{/* The selector labels of shard .index's pods. Takes (dict "root" $ "index" I). */}}
{{- define "scenario-exporter.shardSelectorLabels" -}}
{{ include "scenario-exporter.selectorLabels" .root }}
{{ include "scenario-exporter.shardLabel" .root }}: {{ .index | toString | quote }}
{{- end }}

{{/*
The Services whose /sd Prometheus reads, one name per line: each shard's, or the
chart's one Service without shards. Fails on settings that would make every
shard's /sd list the same address or contradict the chart's --shard flags.
*/}}
{{- define "scenario-exporter.sdServices" -}}
{{- if include "scenario-exporter.sharded" . }}
{{- range $index := until (int .Values.shards) }}
{{ include "scenario-exporter.shardName" (dict "root" $ "index" $index) }}
{{- end }}
{{- else }}
{{ include "scenario-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/* Fails on values that contradict shards > 1. */}}
{{- define "scenario-exporter.checkShards" -}}
{{- if include "scenario-exporter.sharded" . }}
{{- $config := .Values.config | default dict }}
{{- range .Values.extraArgs }}
{{- if or (hasPrefix "--shard" .) (hasPrefix "--web.external-address" .) }}
{{- fail (printf "extraArgs: %s contradicts shards=%d: the chart gives each shard's pods --shard=I/%d, and each shard's /sd must list the address of its own Service (the Host it is asked at)" . (int $.Values.shards) (int $.Values.shards)) }}
{{- end }}
{{- end }}
{{- if or (hasKey $config "shard") (dig "web" "external-address" "" $config) }}
{{- fail (printf "config: shard and web.external-address contradict shards=%d: the chart gives each shard's pods --shard=I/%d, and each shard's /sd must list the address of its own Service (the Host it is asked at)" (int .Values.shards) (int .Values.shards)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
sessionAffinity of a Service whose address /sd lists (.probed): ClientIP unless
service.sessionAffinity says otherwise, so that each Prometheus keeps reading an
account's counters from one replica (replicas refresh at different moments: one
may be a few minutes behind another, which a counter would take for a reset).
Takes (dict "root" $ "probed" BOOL); empty: Kubernetes' default (None).
*/}}
{{- define "scenario-exporter.sessionAffinity" -}}
{{- $root := .root }}
{{- if $root.Values.service.sessionAffinity }}
{{- $root.Values.service.sessionAffinity }}
{{- else if .probed }}ClientIP
{{- end }}
{{- end }}
