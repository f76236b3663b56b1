#!/usr/bin/env bash
# `make k8s-check`: every rendered variant of the chart, and the kustomize dev overlay, through a real
# Kubernetes API server's server-side dry run (`kubectl apply --dry-run=server --validate=strict`). It
# catches what JSON schemas miss: value ranges (ports), label syntax, immutable and cross-field rules.
# Deliberately broken manifests must be refused, or the check fails.
#
# etcd and kube-apiserver run on loopback ports of this process only, with state in a temporary
# directory, and stop when it exits. The binaries are built once from the Go module proxy and cached
# (scripts/deploy/tools.sh: ~25 min on 2 cores, cold). kubectl always gets an explicit kubeconfig: with
# none it would default to localhost:8080, which is query-svc's port here.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
TOOLS=scripts/deploy/tools.sh
CHART=deploy/k8s/helm/cqrs-platform
NAMESPACE=cqrs

log() { printf '[k8s-check %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

"$TOOLS" ensure helm etcd kube-apiserver kubectl
HELM="$("$TOOLS" path helm)"
ETCD="$("$TOOLS" path etcd)"
APISERVER="$("$TOOLS" path kube-apiserver)"
KUBECTL_BIN="$("$TOOLS" path kubectl)"

work="$(mktemp -d "${TMPDIR:-/tmp}/k8s-check.XXXXXX")"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ETCD_PORT="$(free_port)"
ETCD_PEER_PORT="$(free_port)"
API_PORT="$(free_port)"

log "starting etcd on 127.0.0.1:$ETCD_PORT"
"$ETCD" --name check --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "check=http://127.0.0.1:$ETCD_PEER_PORT" >"$work/etcd.log" 2>&1 &
pids+=($!)

# Service-account signing keys and a static token: the API server refuses to start without them.
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token="$(openssl rand -hex 16)"
echo "$token,check,check,system:masters" >"$work/tokens.csv"

log "starting kube-apiserver $("$APISERVER" --version | awk '{print $2}') on 127.0.0.1:$API_PORT"
"$APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --secure-port "$API_PORT" --cert-dir "$work/certs" --token-auth-file "$work/tokens.csv" \
  --authorization-mode AlwaysAllow --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$work/sa.pub" --service-account-signing-key-file "$work/sa.key" \
  --service-cluster-ip-range 10.96.0.0/24 --endpoint-reconciler-type none >"$work/apiserver.log" 2>&1 &
pids+=($!)

cat >"$work/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: check, cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}}]
users: [{name: check, user: {token: "$token"}}]
contexts: [{name: check, context: {cluster: check, user: check}}]
current-context: check
KUBECONFIG
kubectl() { "$KUBECTL_BIN" --kubeconfig "$work/kubeconfig" "$@"; }

for _ in $(seq 1 120); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl get --raw /readyz >/dev/null 2>&1 || { tail -20 "$work/apiserver.log" >&2; die "kube-apiserver not ready after 60 s"; }
log "API server ready; installing the stand-in CRDs (deploy/k8s/check-crds) and the namespaces"
kubectl apply -f deploy/k8s/check-crds/ >/dev/null
kubectl wait --for condition=Established --timeout 60s crd/scaledobjects.keda.sh crd/servicemonitors.monitoring.coreos.com \
  crd/prometheusrules.monitoring.coreos.com >/dev/null
kubectl create namespace "$NAMESPACE" >/dev/null
kubectl create namespace cqrs-dev >/dev/null

dry_run() { kubectl apply --dry-run=server --validate=strict --namespace "$NAMESPACE" -f "$1"; }

failures=0
check() {  # check NAME FILE: must be accepted
  if out="$(dry_run "$2" 2>&1)"; then
    log "ok      $1 ($(grep -c . <<<"$out") objects accepted)"
  else
    log "FAILED  $1"; printf '%s\n' "$out" >&2; failures=$((failures + 1))
  fi
}
refuse() {  # refuse NAME FILE EXPECTED: must be refused, with EXPECTED in the answer
  if out="$(dry_run "$2" 2>&1)"; then
    log "FAILED  $1 was accepted"; failures=$((failures + 1))
  elif grep -qF -- "$3" <<<"$out"; then
    log "ok      $1 refused: $(grep -F -- "$3" <<<"$out" | head -1 | cut -c1-160)"
  else
    log "FAILED  $1 refused, but not for '$3':"; printf '%s\n' "$out" >&2; failures=$((failures + 1))
  fi
}

"$HELM" template cqrs "$CHART" --namespace "$NAMESPACE" >"$work/default.yaml"
check "chart: default values" "$work/default.yaml"
for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  "$HELM" template cqrs "$CHART" --namespace "$NAMESPACE" --values "$values" >"$work/$name.yaml"
  check "chart: $name variant" "$work/$name.yaml"
done
NAMESPACE=cqrs-dev
"$KUBECTL_BIN" kustomize deploy/k8s/manifests/overlays/dev >"$work/dev-overlay.yaml"
check "manifests: overlays/dev" "$work/dev-overlay.yaml"
NAMESPACE=cqrs

# Broken on purpose. The first passes both the chart's values schema and kubernetes-validate (JSON
# schemas carry no port range): only a server refuses it.
sed '0,/^      port: 8080$/s//      port: 80800/' "$work/default.yaml" >"$work/bad-port.yaml"
refuse "broken: a service port out of range" "$work/bad-port.yaml" "must be between 1 and 65535"
sed '0,/imagePullPolicy:/s//imagePulPolicy:/' "$work/default.yaml" >"$work/unknown-field.yaml"
refuse "broken: an unknown field" "$work/unknown-field.yaml" 'unknown field'
"$HELM" template cqrs "$CHART" --namespace "$NAMESPACE" --set-string 'services.command.nodeSelector.bad key!=x' \
  >"$work/bad-label.yaml"
refuse "broken: a node selector key the chart schema allows" "$work/bad-label.yaml" "name part must consist of"
# The first Deployment's selector (its line and the three below it) removed.
awk '/^kind: Deployment$/ {deployment = 1} deployment && !done && /^  selector:$/ {skip = 4; done = 1}
     skip > 0 {skip--; next} {print}' "$work/default.yaml" \
  >"$work/missing-selector.yaml"
refuse "broken: a Deployment without its required selector" "$work/missing-selector.yaml" "spec.selector: Required value"
# A PrometheusRule whose first rule with a `for` waits "5 minutes" (Prometheus durations are 5m): the
# stand-in CRD's pattern refuses it, as the operator's CRD does; promtool is the authority on the rest.
sed '0,/^        for: .*$/s//        for: 5 minutes/' "$work/keda.yaml" >"$work/bad-rule.yaml"
grep -q '^        for: 5 minutes$' "$work/bad-rule.yaml" || die "bad-rule.yaml: no rule with a 'for' to break"
refuse "broken: a PrometheusRule duration" "$work/bad-rule.yaml" "spec.groups[0].rules[0].for"

# Upgrades: the defaults installed for real (objects stored; no controllers run here), then every
# variant applied over them, as `helm upgrade` would. The setup Job is deleted first, as its hook
# delete policy (before-hook-creation) does: a Job's pod template is immutable.
kubectl apply --namespace "$NAMESPACE" -f "$work/default.yaml" >/dev/null
kubectl delete job --namespace "$NAMESPACE" cqrs-setup >/dev/null
for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  check "upgrade: default -> $name" "$work/$name.yaml"
done
# An upgrade that changes a Deployment's selector cannot be applied over the installed one.
awk '/^kind: Deployment$/ {deployment = 1}
     deployment && !done && /^      app.kubernetes.io\/name: command-svc$/ {print "      app.kubernetes.io/name: command"; done = 1; next}
     {print}' "$work/default.yaml" >"$work/new-selector.yaml"
refuse "broken: an upgrade that changes a selector" "$work/new-selector.yaml" "field is immutable"

if ((failures)); then die "$failures check(s) failed"; fi
log "all variants accepted and every broken manifest refused by kube-apiserver $("$APISERVER" --version | awk '{print $2}')"
