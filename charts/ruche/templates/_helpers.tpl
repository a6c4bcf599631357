{{/* The release's full name, at most 63 characters. */}}
{{- define "ruche.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the release's namespace too (once): releases never clash. */}}
{{- define "ruche.clusterName" -}}
{{- $full := include "ruche.fullname" . -}}
{{- if hasSuffix .Release.Namespace $full -}}
{{- $full -}}
{{- else -}}
{{- printf "%s-%s" $full .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ruche.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: ruche
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ruche.selectorLabels" -}}
app.kubernetes.io/name: ruche-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ruche.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespace of the fleet and rooms the release creates: fleet.namespace, else the first
watched namespace, else the release's. */}}
{{- define "ruche.fleetNamespace" -}}
{{- default (default .Release.Namespace (first .Values.watchNamespaces)) .Values.fleet.namespace -}}
{{- end -}}
