{{- define "ranvier-operator.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ranvier-operator.labels" -}}
app.kubernetes.io/name: ranvier-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "ranvier-operator.selector" -}}
app.kubernetes.io/name: ranvier-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
