{{/* Name of the release's objects: <release>-wharf, or <release> when it already contains "wharf". */}}
{{- define "wharf.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wharf.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wharf.labels" -}}
{{ include "wharf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "wharf.adminSecretName" -}}
{{- default (printf "%s-admin" (include "wharf.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{/* The Service's in-cluster URL, with a trailing slash: what pods in the cluster reach wharf at. */}}
{{- define "wharf.serviceUrl" -}}
{{- printf "http://%s.%s.svc:%v/" (include "wharf.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}

{{/* The first base URL wharf writes into npm and cargo documents (for requests whose Host names no listed
     URL): the in-cluster URL (unless inClusterUrl is false), else publicUrl. Empty when neither. */}}
{{- define "wharf.publicUrl" -}}
{{- if .Values.inClusterUrl -}}
{{- include "wharf.serviceUrl" . -}}
{{- else if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- end -}}
{{- end -}}

{{/* A size (wharf's 45GiB, 20GB, 500MiB; Kubernetes' 50Gi, 50G; or bytes) as a number of bytes, for the
     chart's own comparisons. */}}
{{- define "wharf.bytes" -}}
{{- $s := . | toString | trim -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?\\s*" $s "" | trimSuffix "B" -}}
{{- $pow := dict "" 0 "K" 1 "k" 1 "M" 2 "G" 3 "T" 4 "P" 5 "E" 6 "Ki" 1 "Mi" 2 "Gi" 3 "Ti" 4 "Pi" 5 "Ei" 6 -}}
{{- if not (hasKey $pow $unit) -}}
{{- fail (printf "cannot read the size %q (use a number with B, KiB, MiB, GiB, TiB, Ki, Mi, Gi, Ti, K, M, G or T)" $s) -}}
{{- end -}}
{{- $base := 1000.0 -}}
{{- if hasSuffix "i" $unit }}{{ $base = 1024.0 }}{{ end -}}
{{- $bytes := float64 $num -}}
{{- range until (int (get $pow $unit)) }}{{ $bytes = mulf $bytes $base }}{{ end -}}
{{- $bytes -}}
{{- end -}}

{{/* Refusals the values schema cannot express (they compare two values). */}}
{{- define "wharf.checks" -}}
{{- if and .Values.persistence.enabled .Values.storage.max_size -}}
{{- $max := include "wharf.bytes" .Values.storage.max_size | float64 -}}
{{- $volume := include "wharf.bytes" .Values.persistence.size | float64 -}}
{{- if gt $max $volume -}}
{{- fail (printf "storage.max_size (%s) is larger than the volume (persistence.size %s): wharf would fill the volume before it evicts anything. Keep max_size about 10%% below persistence.size, or grow the volume (see \"Resize the volume\" in the README)." (toString .Values.storage.max_size) (toString .Values.persistence.size)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when a stopping pod sleeps preStopSleepSeconds in the kubelet's sleep action (Kubernetes >= 1.30);
     empty otherwise, and then wharf's server.drain_delay does the same. */}}
{{- define "wharf.preStopSleep" -}}
{{- if and .Values.preStopSleepSeconds (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}

{{/* The wharf configuration file, from the values (key names are wharf's own). */}}
{{- define "wharf.config" -}}
listen: "0.0.0.0:8080"
{{- with include "wharf.publicUrl" . }}
public_url: {{ . | quote }}
{{- end }}
{{- if and .Values.inClusterUrl .Values.publicUrl }}
public_urls: [{{ .Values.publicUrl | quote }}]
{{- end }}
{{- if hasKey .Values "price_per_gb" }}
price_per_gb: {{ .Values.price_per_gb }}
{{- end }}
storage:
  path: /var/lib/wharf
  {{- with .Values.storage.max_size }}
  max_size: {{ . | quote }}
  {{- end }}
  {{- with .Values.storage.min_free }}
  min_free: {{ . | quote }}
  {{- end }}
  {{- with .Values.storage.max_negative_entries }}
  max_negative_entries: {{ . }}
  {{- end }}
  {{- with .Values.storage.s3 }}
  s3:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- if .Values.admin.enabled }}
admin:
  token_file: /etc/wharf/admin/token
{{- end }}
{{- with .Values.http }}
http:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $server := deepCopy .Values.server }}
{{- /* Without the kubelet's sleep action (Kubernetes < 1.30), wharf itself keeps serving after SIGTERM. */}}
{{- if and .Values.preStopSleepSeconds (not (include "wharf.preStopSleep" .)) (not (hasKey $server "drain_delay")) }}
{{- $_ := set $server "drain_delay" (printf "%ds" (int .Values.preStopSleepSeconds)) }}
{{- end }}
{{- with $server }}
server:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $log := deepCopy .Values.log }}
{{- /* `--set log.access_log_sample=0.1` arrives as a string; wharf reads a number. */}}
{{- if hasKey $log "access_log_sample" }}
{{- $_ := set $log "access_log_sample" (float64 $log.access_log_sample) }}
{{- end }}
log:
  {{- toYaml $log | nindent 2 }}
{{- with .Values.usage }}
usage:
  max_namespaces: {{ .max_namespaces | default 50 | int }}
  {{- if .pods.enabled }}
  pods:
    enabled: true
    {{- with .pods.namespaces }}
    namespaces: {{ toJson . }}
    {{- end }}
    {{- with .pods.label_selector }}
    label_selector: {{ . | quote }}
    {{- end }}
    {{- with .pods.label }}
    label: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end }}
{{- if .Values.repositories }}
repositories:
  {{- toYaml .Values.repositories | nindent 2 }}
{{- else }}
repositories: {}
{{- end }}
{{- end -}}

{{/* "true" when the chart creates wharf's service account: asked for, or needed by usage.pods (RBAC must not
     be bound to the namespace's default account). */}}
{{- define "wharf.createServiceAccount" -}}
{{- if or .Values.serviceAccount.create (and .Values.usage.pods.enabled (not .Values.serviceAccount.name)) -}}
true
{{- end -}}
{{- end -}}

{{- define "wharf.serviceAccountName" -}}
{{- if include "wharf.createServiceAccount" . -}}
{{- default (include "wharf.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Injection: the repository a client format is pointed at (injection.repositories, else the first of that
     format by name; "-": none). Argument: dict "root" $ "format" "pypi". */}}
{{- define "wharf.injection.repository" -}}
{{- $root := .root -}}
{{- $format := .format -}}
{{- $chosen := get $root.Values.injection.repositories $format -}}
{{- if not $chosen -}}
{{- range $name, $repo := $root.Values.repositories -}}
{{- if and (not $chosen) (eq $repo.format $format) }}{{ $chosen = $name }}{{ end -}}
{{- end -}}
{{- else if ne $chosen "-" -}}
{{- $repo := get $root.Values.repositories $chosen -}}
{{- if not $repo -}}
{{- fail (printf "injection.repositories.%s: no repository %q in `repositories`" $format $chosen) -}}
{{- end -}}
{{- if ne $repo.format $format -}}
{{- fail (printf "injection.repositories.%s: repository %q has format %s, not %s" $format $chosen $repo.format $format) -}}
{{- end -}}
{{- end -}}
{{- if ne $chosen "-" }}{{ $chosen }}{{ end -}}
{{- end -}}

{{/* Injection: the base URL job pods reach wharf at, with a trailing slash. */}}
{{- define "wharf.injection.url" -}}
{{- $url := .Values.injection.url | default (include "wharf.serviceUrl" .) -}}
{{- printf "%s/" (trimSuffix "/" $url) -}}
{{- end -}}

{{/* Injection: the environment variables for pip, uv, npm and Go, as a YAML list of {name, value}. */}}
{{- define "wharf.injection.env" -}}
{{- $base := include "wharf.injection.url" . -}}
{{- $url := urlParse $base -}}
{{- with include "wharf.injection.repository" (dict "root" . "format" "pypi") }}
- name: PIP_INDEX_URL
  value: {{ printf "%s%s/simple/" $base . | quote }}
{{- if eq $url.scheme "http" }}
- name: PIP_TRUSTED_HOST
  value: {{ $url.hostname | quote }}
{{- end }}
- name: UV_DEFAULT_INDEX
  value: {{ printf "%s%s/simple/" $base . | quote }}
{{- end }}
{{- with include "wharf.injection.repository" (dict "root" . "format" "npm") }}
- name: npm_config_registry
  value: {{ printf "%s%s/" $base . | quote }}
{{- end }}
{{- with include "wharf.injection.repository" (dict "root" . "format" "go") }}
- name: GOPROXY
  value: {{ printf "%s%s" $base . | quote }}
{{- end }}
{{- end -}}

{{/* Injection: cargo's source replacement (empty without a cargo repository). */}}
{{- define "wharf.injection.cargoConfig" -}}
{{- with include "wharf.injection.repository" (dict "root" . "format" "cargo") -}}
[source.crates-io]
replace-with = "wharf"

[source.wharf]
registry = {{ printf "sparse+%s%s/" (include "wharf.injection.url" $) . | quote }}
{{- end -}}
{{- end -}}

{{/* Injection: the name of the ConfigMap (in each injected namespace) and of the pod volume holding it. */}}
{{- define "wharf.injection.cargoName" -}}
{{- printf "%s-cargo-config" (include "wharf.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Injection, CEL: one container list's apply configuration. Argument: dict "root" $ "list" "containers". */}}
{{- define "wharf.injection.containersCel" -}}
{{- $root := .root -}}
{{- $type := printf "Object.spec.%s" .list -}}
{{- $env := include "wharf.injection.env" $root | fromYamlArray -}}
{{- $cargo := include "wharf.injection.cargoConfig" $root -}}
object.spec.{{ .list }}.map(c, {{ $type }}{
  name: c.name
  {{- if $env }},
  env: [
    {{- range $i, $e := $env }}{{ if $i }},{{ end }}
    {{ $type }}.env{name: {{ $e.name | quote }}, value: {{ $e.value | quote }}}
    {{- end }}
  ].filter(e, !has(c.env) || !c.env.exists(v, v.name == e.name))
  {{- end }}
  {{- if $cargo }},
  volumeMounts: ((has(c.volumeMounts) && c.volumeMounts.exists(m, m.mountPath == "/.cargo" || m.mountPath.startsWith("/.cargo/")))
    ? []
    : [{{ $type }}.volumeMounts{name: {{ include "wharf.injection.cargoName" $root | quote }}, mountPath: "/.cargo", readOnly: true}])
  {{- end }}
})
{{- end -}}
