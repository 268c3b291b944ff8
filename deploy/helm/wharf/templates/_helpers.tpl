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

{{/* The wharf configuration file, from the values (key names are wharf's own). */}}
{{- define "wharf.config" -}}
listen: "0.0.0.0:8080"
{{- with .Values.publicUrl }}
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
