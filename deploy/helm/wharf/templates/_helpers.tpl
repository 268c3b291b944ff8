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

{{/* The base URL wharf writes into npm and cargo documents: publicUrl when given, else the in-cluster URL
     (unless inClusterUrl is false). Empty when neither. */}}
{{- define "wharf.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if .Values.inClusterUrl -}}
{{- include "wharf.serviceUrl" . -}}
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

{{/* The wharf configuration file, from the values (key names are wharf's own). */}}
{{- define "wharf.config" -}}
listen: "0.0.0.0:8080"
{{- with include "wharf.publicUrl" . }}
public_url: {{ . | quote }}
{{- end }}
storage:
  path: /var/lib/wharf
  {{- with .Values.storage.max_size }}
  max_size: {{ . | quote }}
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
{{- with .Values.server }}
server:
  {{- toYaml . | nindent 2 }}
{{- end }}
log:
  {{- toYaml .Values.log | nindent 2 }}
{{- if .Values.repositories }}
repositories:
  {{- toYaml .Values.repositories | nindent 2 }}
{{- else }}
repositories: {}
{{- end }}
{{- end -}}

{{- define "wharf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wharf.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
