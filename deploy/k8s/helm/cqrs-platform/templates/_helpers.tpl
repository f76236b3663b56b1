{{/* The three services: their chart key, package (image and app name) and settings prefix. */}}
{{- define "cqrs.packages" -}}
command: command-svc
projector: projector-svc
query: query-svc
{{- end -}}

{{- define "cqrs.package" -}}
{{- get (include "cqrs.packages" . | fromYaml) .key -}}
{{- end -}}

{{- define "cqrs.labels" -}}
app.kubernetes.io/part-of: cqrs-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* ctx: dict "root" $ "key" <service key> */}}
{{- define "cqrs.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/name: {{ include "cqrs.package" . }}
{{- end -}}

{{- define "cqrs.fullname" -}}
{{ .root.Release.Name }}-{{ include "cqrs.package" . }}
{{- end -}}

{{/* A service's image tag may differ from image.tag during a staged upgrade (deploy/README.md). */}}
{{- define "cqrs.image" -}}
{{ .root.Values.image.repository }}/{{ .name }}:{{ .tag | default .root.Values.image.tag }}
{{- end -}}

{{- define "cqrs.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef: {name: {{ required (printf "%s: the name of an existing Secret is required" .what) .secret | quote }}, key: {{ .key | quote }}}
{{- end -}}

{{/* Which service reads what: one declaration, used by the Deployments and by the setup Job. */}}
{{- define "cqrs.readsKafka" -}}{{ has .key (list "command" "projector" "setup") }}{{- end -}}
{{- define "cqrs.readsAuth" -}}{{ has .key (list "command" "query") }}{{- end -}}
{{- /* setup: `cqrs setup` migrates the read models (the projector's start-up step) with the writer DSN. */}}
{{- define "cqrs.readsPostgres" -}}{{ has .key (list "projector" "query" "setup") }}{{- end -}}

{{/*
The environment of one service (ctx: dict "root" $ "key" <command|projector|query|setup>). Every
variable is one the service's settings read (tests/deploy checks this against the settings classes).
*/}}
{{- define "cqrs.env" -}}
{{- $v := .root.Values -}}
{{- $key := .key -}}
- {name: LOG_LEVEL, value: {{ $v.logLevel | quote }}}
- {name: LOG_FORMAT, value: "json"}
{{- if ne $key "setup" }}
{{- $service := get $v.services $key }}
- {name: {{ include "cqrs.package" . | upper | replace "-" "_" }}_PORT, value: {{ $service.port | quote }}}
{{- end }}
{{- if eq (include "cqrs.readsKafka" .) "true" }}
- {name: KAFKA_BOOTSTRAP_SERVERS, value: {{ $v.kafka.bootstrapServers | quote }}}
- {name: CQRS_TOPIC_PREFIX, value: {{ $v.kafka.topicPrefix | quote }}}
- {name: CQRS_TOPIC_PARTITIONS, value: {{ $v.kafka.partitions | quote }}}
- {name: CQRS_TOPIC_REPLICATION_FACTOR, value: {{ $v.kafka.replicationFactor | quote }}}
{{- end }}
{{- if eq (include "cqrs.readsAuth" .) "true" }}
{{- /* Authentication is always on in a deployment: the chart has no switch to turn it off. */}}
- {name: CQRS_AUTH_MODE, value: "jwt"}
- {name: JWT_ALGORITHM, value: {{ $v.auth.algorithm | quote }}}
- {name: JWT_ISSUER, value: {{ $v.auth.issuer | quote }}}
- {name: JWT_AUDIENCE, value: {{ $v.auth.audience | quote }}}
{{- if eq $v.auth.algorithm "RS256" }}
- {name: JWT_JWKS_FILE, value: "/etc/cqrs/jwks/{{ $v.auth.jwks.key }}"}
{{- else }}
{{ include "cqrs.secretEnv" (dict "name" "JWT_SECRET" "secret" $v.auth.hmac.existingSecret "key" $v.auth.hmac.key "what" "auth.hmac.existingSecret") }}
{{- end }}
{{- end }}
{{- if eq $key "command" }}
- name: COMMAND_SVC_INSTANCE_ID
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
{{- include "cqrs.writeStoreEnv" . }}
{{- end }}
{{- if eq (include "cqrs.readsPostgres" .) "true" }}
{{ include "cqrs.secretEnv" (dict "name" "DATABASE_URL" "secret" $v.readStore.existingSecret "key" $v.readStore.writerKey "what" "readStore.existingSecret") }}
{{- if eq $key "query" }}
{{ include "cqrs.secretEnv" (dict "name" "DATABASE_READER_URL" "secret" $v.readStore.existingSecret "key" $v.readStore.readerKey "what" "readStore.existingSecret") }}
{{ include "cqrs.secretEnv" (dict "name" "QUERY_SVC_CURSOR_SECRET" "secret" $v.query.cursorSecret.existingSecret "key" $v.query.cursorSecret.key "what" "query.cursorSecret.existingSecret") }}
{{- end }}
{{- include "cqrs.auroraEnv" . }}
{{- end }}
{{- if eq $key "projector" }}
- {name: PROJECTOR_SVC_PROJECTIONS, value: {{ join "," $v.services.projector.projections | quote }}}
{{- end }}
{{- if eq $key "query" }}
{{- /* query-svc serves the read models the projector builds: one list for both. */}}
- {name: QUERY_SVC_PROJECTIONS, value: {{ join "," $v.services.projector.projections | quote }}}
- {name: QUERY_SVC_WORKERS, value: {{ $v.services.query.workers | quote }}}
{{- end }}
{{- end -}}

{{- define "cqrs.writeStoreEnv" -}}
{{- $ws := .root.Values.writeStore }}
- {name: WRITE_STORE, value: {{ $ws.type | quote }}}
{{- if eq $ws.type "mongodb" }}
{{ include "cqrs.secretEnv" (dict "name" "MONGODB_URI" "secret" $ws.mongodb.existingSecret "key" $ws.mongodb.key "what" "writeStore.mongodb.existingSecret") }}
- {name: MONGODB_DATABASE, value: {{ $ws.mongodb.database | quote }}}
{{- else }}
- {name: AWS_REGION, value: {{ $ws.dynamodb.region | quote }}}
{{- with $ws.dynamodb.endpointUrl }}
- {name: DYNAMODB_ENDPOINT_URL, value: {{ . | quote }}}
{{- end }}
- {name: DYNAMODB_TABLE_PREFIX, value: {{ $ws.dynamodb.tablePrefix | quote }}}
- {name: COMMAND_SVC_EVENT_PUBLISHER, value: {{ $ws.dynamodb.eventPublisher | quote }}}
{{- with $ws.dynamodb.existingSecret }}
{{ include "cqrs.secretEnv" (dict "name" "AWS_ACCESS_KEY_ID" "secret" . "key" "AWS_ACCESS_KEY_ID" "what" "writeStore.dynamodb.existingSecret") }}
{{ include "cqrs.secretEnv" (dict "name" "AWS_SECRET_ACCESS_KEY" "secret" . "key" "AWS_SECRET_ACCESS_KEY" "what" "writeStore.dynamodb.existingSecret") }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cqrs.auroraEnv" -}}
{{- $rs := .root.Values.readStore }}
{{- if eq $rs.type "aurora" }}
- {name: DATABASE_SSLMODE, value: {{ $rs.aurora.sslMode | quote }}}
- {name: DATABASE_SSLROOTCERT, value: "/etc/cqrs/rds-ca/{{ $rs.aurora.caBundle.key }}"}
{{- if $rs.aurora.iamAuth }}
- {name: DATABASE_IAM_AUTH, value: "true"}
- {name: DATABASE_IAM_REGION, value: {{ $rs.aurora.region | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes (and their mounts) a service needs beyond /tmp: the JWKS and the RDS CA bundle. */}}
{{- define "cqrs.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if and (eq (include "cqrs.readsAuth" .) "true") (eq .root.Values.auth.algorithm "RS256") }}
- {name: jwks, mountPath: /etc/cqrs/jwks, readOnly: true}
{{- end }}
{{- if and (eq (include "cqrs.readsPostgres" .) "true") (eq .root.Values.readStore.type "aurora") }}
- {name: rds-ca, mountPath: /etc/cqrs/rds-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "cqrs.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if and (eq (include "cqrs.readsAuth" .) "true") (eq .root.Values.auth.algorithm "RS256") }}
- name: jwks
  secret: {secretName: {{ required "auth.jwks.existingSecret is required for RS256" .root.Values.auth.jwks.existingSecret | quote }}}
{{- end }}
{{- if and (eq (include "cqrs.readsPostgres" .) "true") (eq .root.Values.readStore.type "aurora") }}
- name: rds-ca
  configMap: {name: {{ .root.Values.readStore.aurora.caBundle.configMap | quote }}}
{{- end }}
{{- end -}}

{{/* KEDA scales this service (then the Deployment leaves `replicas` to it). */}}
{{- define "cqrs.kedaScaled" -}}
{{- and .root.Values.keda.enabled (has .key (list "command" "projector")) -}}
{{- end -}}
