{{/* Names, labels and the pieces every Ray pod shares. */}}

{{- define "raydojo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* Resource prefix; KubeRay wants DNS-1035 names (start with a letter) of at most 47 characters. */}}
{{- define "raydojo.fullname" -}}
{{- $name := "" }}
{{- if .Values.fullnameOverride }}
{{- $name = .Values.fullnameOverride }}
{{- else if contains (include "raydojo.name" .) .Release.Name }}
{{- $name = .Release.Name }}
{{- else }}
{{- $name = printf "%s-%s" .Release.Name (include "raydojo.name" .) }}
{{- end }}
{{- $name = $name | trunc 40 | trimSuffix "-" }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "resource prefix %q must start with a lowercase letter (KubeRay needs DNS-1035 names): rename the release or set fullnameOverride" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "raydojo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raydojo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raydojo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "raydojo.labels" -}}
helm.sh/chart: {{ include "raydojo.chart" . }}
{{ include "raydojo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: raydojo
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "raydojo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-gpu" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}

{{/* The Ray cluster's name when it is a plain RayCluster (RayJobs with cluster: shared select it). */}}
{{- define "raydojo.clusterName" -}}
{{- include "raydojo.fullname" . }}
{{- end }}

{{- define "raydojo.authSecretName" -}}
{{- default (printf "%s-ray-token" (include "raydojo.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "raydojo.apiKeysSecretName" -}}
{{- default (printf "%s-serve-api-keys" (include "raydojo.fullname" .)) .Values.serve.apiKeys.existingSecret }}
{{- end }}

{{- define "raydojo.pvcName" -}}
{{- default (printf "%s-storage" (include "raydojo.fullname" .)) .Values.storage.pvc.existingClaim }}
{{- end }}

{{/* Storage root: the PVC mount path or the object-store URI (validated in validate.yaml). */}}
{{- define "raydojo.storageRoot" -}}
{{- if eq .Values.storage.type "uri" }}{{ .Values.storage.uri | trimSuffix "/" }}{{ else }}{{ .Values.storage.mountPath | trimSuffix "/" }}{{ end }}
{{- end }}

{{/* Environment of every Ray container. Call with (dict "root" $ "serving" bool): only the Serve
cluster gets the API keys. */}}
{{- define "raydojo.rayEnv" -}}
{{- $v := .root.Values }}
- name: DOJO_STORAGE_ROOT
  value: {{ include "raydojo.storageRoot" .root | quote }}
{{- if and .serving $v.serve.apiKeys.enabled }}
- name: DOJO_SERVE_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "raydojo.apiKeysSecretName" .root }}
      key: api-keys
{{- end }}
{{- with $v.storage.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes of every Ray pod: /tmp/ray and /dev/shm as emptyDirs (names KubeRay reuses), plus storage. */}}
{{- define "raydojo.volumes" -}}
- name: ray-logs
  emptyDir:
    sizeLimit: {{ .Values.cluster.tmpSize }}
- name: shared-mem
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.cluster.sharedMemorySize }}
{{- if eq .Values.storage.type "pvc" }}
- name: dojo-storage
  persistentVolumeClaim:
    claimName: {{ include "raydojo.pvcName" . }}
{{- end }}
{{- end }}

{{- define "raydojo.volumeMounts" -}}
- name: ray-logs
  mountPath: /tmp/ray
- name: shared-mem
  mountPath: /dev/shm
{{- if eq .Values.storage.type "pvc" }}
- name: dojo-storage
  mountPath: {{ .Values.storage.mountPath }}
{{- end }}
{{- end }}

{{/* Default node affinity of GPU worker groups: nodes labelled as NVIDIA GPU nodes by GPU feature
discovery, node feature discovery, GKE or EKS (any one of them). */}}
{{- define "raydojo.gpuNodeAffinity" -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - {key: nvidia.com/gpu.present, operator: In, values: ["true"]}
      - matchExpressions:
          - {key: feature.node.kubernetes.io/pci-10de.present, operator: In, values: ["true"]}
      - matchExpressions:
          - {key: cloud.google.com/gke-accelerator, operator: Exists}
      - matchExpressions:
          - {key: k8s.amazonaws.com/accelerator, operator: Exists}
{{- end }}

{{/*
A RayClusterSpec. Call with (dict "root" $ "cluster" <cluster values> "component" <label value>).
Used by the RayService, the RayCluster and every RayJob with its own cluster, so all share one shape.
*/}}
{{- define "raydojo.rayClusterSpec" -}}
{{- $root := .root }}
{{- $c := .cluster }}
{{- $v := $root.Values }}
{{- $image := include "raydojo.image" $root }}
rayVersion: {{ $v.rayVersion | quote }}
{{- if $v.auth.enabled }}
authOptions:
  mode: token
  secretName: {{ include "raydojo.authSecretName" $root }}
{{- end }}
enableInTreeAutoscaling: {{ $c.autoscaling.enabled }}
{{- if $c.autoscaling.enabled }}
autoscalerOptions:
  upscalingMode: {{ $c.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ $c.autoscaling.idleTimeoutSeconds }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  resources:
    {{- toYaml $c.autoscaling.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
{{- end }}
headGroupSpec:
  serviceType: {{ $c.head.serviceType }}
  rayStartParams:
    num-cpus: {{ $c.head.numCpus | quote }}
    dashboard-host: "0.0.0.0"
    metrics-export-port: "8080"
    {{- range $k, $val := $c.head.rayStartParams }}
    {{ $k }}: {{ $val | quote }}
    {{- end }}
  template:
    metadata:
      labels:
        {{- include "raydojo.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      {{- if not $c.autoscaling.enabled }}
      automountServiceAccountToken: false
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.head.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumes:
        {{- include "raydojo.volumes" $root | nindent 8 }}
      containers:
        - name: ray-head
          image: {{ $image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            - {name: gcs-server, containerPort: 6379}
            - {name: dashboard, containerPort: 8265}
            - {name: client, containerPort: 10001}
            - {name: serve, containerPort: 8000}
            - {name: metrics, containerPort: 8080}
            - {name: as-metrics, containerPort: 44217}
            - {name: dash-metrics, containerPort: 44227}
          env:
            {{- include "raydojo.rayEnv" (dict "root" $root "serving" (eq $.component "serve")) | nindent 12 }}
            {{- with $v.monitoring.grafanaHost }}
            - {name: RAY_GRAFANA_HOST, value: {{ . | quote }}}
            {{- end }}
            {{- with $v.monitoring.grafanaIframeHost }}
            - {name: RAY_GRAFANA_IFRAME_HOST, value: {{ . | quote }}}
            {{- end }}
            {{- with $v.monitoring.prometheusHost }}
            - {name: RAY_PROMETHEUS_HOST, value: {{ . | quote }}}
            {{- end }}
            {{- with $c.head.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- toYaml $c.head.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "raydojo.volumeMounts" $root | nindent 12 }}
{{- if not (or $c.cpuWorkers.enabled $c.gpuWorkerGroups) }}
workerGroupSpecs: []
{{- else }}
workerGroupSpecs:
{{- end }}
  {{- if $c.cpuWorkers.enabled }}
  - groupName: cpu
    replicas: {{ $c.cpuWorkers.replicas }}
    minReplicas: {{ $c.cpuWorkers.minReplicas }}
    maxReplicas: {{ $c.cpuWorkers.maxReplicas }}
    rayStartParams:
      metrics-export-port: "8080"
      {{- range $k, $val := $c.cpuWorkers.rayStartParams }}
      {{ $k }}: {{ $val | quote }}
      {{- end }}
    template:
      metadata:
        labels:
          {{- include "raydojo.labels" $root | nindent 10 }}
          app.kubernetes.io/component: {{ .component }}
      spec:
        automountServiceAccountToken: false
        securityContext:
          {{- toYaml $v.podSecurityContext | nindent 10 }}
        terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
        {{- with $v.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $c.cpuWorkers.nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $c.cpuWorkers.tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $c.cpuWorkers.affinity }}
        affinity:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumes:
          {{- include "raydojo.volumes" $root | nindent 10 }}
        containers:
          - name: ray-worker
            image: {{ $image }}
            imagePullPolicy: {{ $v.image.pullPolicy }}
            ports:
              - {name: serve, containerPort: 8000}
              - {name: metrics, containerPort: 8080}
            env:
              {{- include "raydojo.rayEnv" (dict "root" $root "serving" (eq $.component "serve")) | nindent 14 }}
              {{- with $c.cpuWorkers.env }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
            resources:
              {{- toYaml $c.cpuWorkers.resources | nindent 14 }}
            securityContext:
              {{- toYaml $v.containerSecurityContext | nindent 14 }}
            volumeMounts:
              {{- include "raydojo.volumeMounts" $root | nindent 14 }}
  {{- end }}
  {{- range $g := $c.gpuWorkerGroups }}
  - groupName: {{ $g.name }}
    replicas: {{ $g.replicas }}
    minReplicas: {{ $g.minReplicas }}
    maxReplicas: {{ $g.maxReplicas }}
    rayStartParams:
      num-gpus: {{ $g.gpus | quote }}
      metrics-export-port: "8080"
      {{- range $k, $val := $g.rayStartParams }}
      {{ $k }}: {{ $val | quote }}
      {{- end }}
    template:
      metadata:
        labels:
          {{- include "raydojo.labels" $root | nindent 10 }}
          app.kubernetes.io/component: {{ $.component }}
      spec:
        automountServiceAccountToken: false
        securityContext:
          {{- toYaml $v.podSecurityContext | nindent 10 }}
        terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
        {{- with $v.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $g.nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        tolerations:
          - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
          {{- with $g.tolerations }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        affinity:
          {{- if hasKey $g "affinity" }}
          {{- toYaml $g.affinity | nindent 10 }}
          {{- else }}
          {{- include "raydojo.gpuNodeAffinity" $root | nindent 10 }}
          {{- end }}
        volumes:
          {{- include "raydojo.volumes" $root | nindent 10 }}
        containers:
          - name: ray-worker
            image: {{ $image }}
            imagePullPolicy: {{ $v.image.pullPolicy }}
            ports:
              - {name: serve, containerPort: 8000}
              - {name: metrics, containerPort: 8080}
            env:
              {{- include "raydojo.rayEnv" (dict "root" $root "serving" (eq $.component "serve")) | nindent 14 }}
              {{- with $g.env }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
            resources:
              requests:
                {{- with $g.resources.requests }}
                {{- toYaml . | nindent 16 }}
                {{- end }}
                nvidia.com/gpu: {{ $g.gpus }}
              limits:
                {{- with $g.resources.limits }}
                {{- toYaml . | nindent 16 }}
                {{- end }}
                nvidia.com/gpu: {{ $g.gpus }}
            securityContext:
              {{- toYaml $v.containerSecurityContext | nindent 14 }}
            volumeMounts:
              {{- include "raydojo.volumeMounts" $root | nindent 14 }}
  {{- end }}
{{- end }}

{{/*
The Serve config (deploy/serve/raydojo.yaml via its synced copy files/serve-config.yaml), verbatim unless
serve.appArgs replaces application arguments or serve.deploymentOverrides names deployments to change;
then the merged config as YAML.
*/}}
{{- define "raydojo.serveConfig" -}}
{{- $raw := .Files.Get "files/serve-config.yaml" }}
{{- $overrides := .Values.serve.deploymentOverrides }}
{{- $appArgs := .Values.serve.appArgs }}
{{- if and (not $overrides) (not $appArgs) }}
{{- $raw }}
{{- else }}
{{- $cfg := fromYaml $raw }}
{{- $names := list }}
{{- range $app := $cfg.applications }}
{{- range $key, $val := $appArgs }}
{{- if not (hasKey $app.args $key) }}
{{- fail (printf "serve.appArgs: unknown argument %q (deploy/serve/raydojo.yaml has %s)" $key (join ", " (keys $app.args | sortAlpha))) }}
{{- end }}
{{- $_ := set $app.args $key $val }}
{{- end }}
{{- range $d := $app.deployments }}
{{- $names = append $names $d.name }}
{{- with index $overrides $d.name }}
{{- $_ := mergeOverwrite $d (deepCopy .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $_ := $overrides }}
{{- if not (has $name $names) }}
{{- fail (printf "serve.deploymentOverrides: unknown deployment %q (deploy/serve/raydojo.yaml has %s)" $name (join ", " $names)) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
{{- end }}

{{/* One shell word of a job entrypoint: numbers as JSON (no 2e+06), plain words raw, others single-quoted. */}}
{{- define "raydojo.shellWord" -}}
{{- if kindIs "string" . }}
{{- if regexMatch "^[A-Za-z0-9_./:=@%+,-]+$" . }}{{ . }}{{ else }}'{{ replace "'" "'\\''" . }}'{{ end }}
{{- else }}
{{- toJson . }}
{{- end }}
{{- end }}
