{{- define "cqrs.labels" -}}
app.kubernetes.io/part-of: cqrs-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "cqrs.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/name: {{ .service.package }}
{{- end -}}

{{- define "cqrs.fullname" -}}
{{ .root.Release.Name }}-{{ .service.package }}
{{- end -}}
