{{/* The chart name, overridable with nameOverride. */}}
{{- define "litellm-org-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name
when it already holds the chart name, else "<release>-<chart>"; at most 63
characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "litellm-org-operator.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "litellm-org-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "litellm-org-operator.labels" -}}
helm.sh/chart: {{ include "litellm-org-operator.chart" . }}
{{ include "litellm-org-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: litellm
{{- end }}

{{/* Labels that select the operator's pods; never change them between releases. */}}
{{- define "litellm-org-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "litellm-org-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "litellm-org-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "litellm-org-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "litellm-org-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Secret holding the database URL: database.existingSecret, else the one this
chart renders from database.url. Exactly one of the two must be set.
*/}}
{{- define "litellm-org-operator.databaseSecretName" -}}
{{- if and .Values.database.existingSecret .Values.database.url }}
{{- fail "database: set database.existingSecret or database.url, not both" }}
{{- else if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.database.url }}
{{- printf "%s-database" (include "litellm-org-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- fail "database: set database.existingSecret (a Secret holding the Postgres URL) or database.url" }}
{{- end }}
{{- end }}

{{/*
"true" when the operator runs with --leader-elect, else empty: leaderElection.enabled
when set, else on exactly when there is more than one replica. Several replicas
without it would all write, so that combination fails.
*/}}
{{- define "litellm-org-operator.leaderElection" -}}
{{- $enabled := .Values.leaderElection.enabled }}
{{- if kindIs "invalid" $enabled }}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- else if $enabled }}
{{- print "true" }}
{{- else if gt (int .Values.replicaCount) 1 }}
{{- fail "leaderElection.enabled=false with replicaCount > 1: every replica would write; enable leader election or use one replica" }}
{{- end }}
{{- end }}

{{/* The RBAC rules the controllers need in every watched namespace (or cluster-wide). */}}
{{- define "litellm-org-operator.watchRules" -}}
- apiGroups: ["litellm.dev"]
  resources: ["organizations", "organizationmembers"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["litellm.dev"]
  resources: ["organizations/status", "organizationmembers/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["litellm.dev"]
  resources: ["organizations/finalizers", "organizationmembers/finalizers"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
How the operator gets its database: "url" (a full URL under database.secretKey,
mounted as a file) or "keys" (host, port, dbname, user and password keys of
database.existingSecret, passed as libpq's PG* environment variables).
*/}}
{{- define "litellm-org-operator.databaseMode" -}}
{{- if eq .Values.database.format "keys" }}
{{- if not .Values.database.existingSecret }}
{{- fail "database.format=keys reads the keys of an existing Secret: set database.existingSecret (e.g. CloudNativePG's <cluster>-app Secret)" }}
{{- end }}
{{- print "keys" }}
{{- else }}
{{- print "url" }}
{{- end }}
{{- end }}
