#!/usr/bin/env bash
# Checks the Helm chart with the real helm binaries, Helm 4 and Helm 3: `helm lint --strict`,
# then `helm template` for each documented combination of values (charts/checks/good), validated
# against Kubernetes' schemas, both majors rendering the same objects; and each bad set of values
# (charts/checks/bad) refused by values.schema.json with the message its `# expect:` line names
# (`# expect-helm3:` for Helm 3's wording).
set -euo pipefail
helm="${HELM:-.tools/bin/helm}"
helm3="${HELM3:-.tools/bin/helm3}"
validate="${VALIDATE:-.tools/venv/bin/kubernetes-validate}"
k8s="${K8S_VERSION:-1.32.0}"
out="${OUT:-out}/chart"
chart=charts/ruche
mkdir -p "$out"
echo "helm $("$helm" version --short), helm3 $("$helm3" version --short)"
"$helm" lint --strict "$chart"
"$helm3" lint --strict "$chart" >/dev/null
for values in charts/checks/good/*.yaml; do
  name="$(basename "$values" .yaml)"
  "$helm" lint --strict "$chart" -f "$values" >/dev/null
  "$helm3" lint --strict "$chart" -f "$values" >/dev/null
  "$helm" template ruche "$chart" --namespace ruche-system -f "$values" > "$out/$name.yaml"
  "$helm3" template ruche "$chart" --namespace ruche-system -f "$values" > "$out/$name.helm3.yaml"
  if ! diff -q "$out/$name.yaml" "$out/$name.helm3.yaml" >/dev/null; then
    echo "chart-check: Helm 3 and Helm 4 render $values differently:" >&2
    diff "$out/$name.yaml" "$out/$name.helm3.yaml" >&2 || true
    exit 1
  fi
  # Kubernetes' own kinds against its schemas (ours and prometheus-operator's have none there;
  # ours are checked by the CRD tests and the API server).
  "$(dirname "$validate")/python" - "$out/$name.yaml" "$out/$name.core.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
core = [d for d in docs if not d["apiVersion"].startswith(("ruche.dev/", "monitoring.coreos.com/"))]
yaml.safe_dump_all(core, open(sys.argv[2], "w"))
print(f"{sys.argv[1]}: {len(docs)} objects, {len(core)} of Kubernetes' own kinds")
PY
  "$validate" --kubernetes-version "$k8s" --strict --quiet "$out/$name.core.yaml"
done
for values in charts/checks/bad/*.yaml; do
  # The two majors validate with different JSON Schema libraries, worded differently.
  for h in "$helm" "$helm3"; do
    if [[ "$h" == "$helm3" ]]; then
      expect="$(sed -n 's/^# expect-helm3: //p' "$values")"
    else
      expect="$(sed -n 's/^# expect: //p' "$values")"
    fi
    if answer="$("$h" template ruche "$chart" -f "$values" 2>&1)"; then
      echo "chart-check: $values was accepted by $h; expected: $expect" >&2
      exit 1
    fi
    if ! grep -qF -- "$expect" <<<"$answer"; then
      echo "chart-check: $values was refused by $h, but not with \`$expect\`:" >&2
      echo "$answer" >&2
      exit 1
    fi
  done
  echo "$values: refused by both: $(grep -F -- "$expect" <<<"$answer" | head -n1 | sed 's/^ *//')"
done
# The dashboards: current with their source, every query parses, every metric is exported.
OUT="${OUT:-out}" "$(dirname "$validate")/python" scripts/dashboards.py check
promtool check rules "${OUT:-out}/dashboard-queries.yaml"
# The alerts: valid rules, each firing when it should and quiet when it should not.
promtool check rules "$chart/files/alerts.yaml"
promtool test rules charts/checks/alerts-test.yaml
# The PrometheusRule carries exactly the rules promtool tested.
"$(dirname "$validate")/python" - "$out/monitored-fleet.yaml" "$chart/files/alerts.yaml" <<'PY'
import sys, yaml
rule = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
assert len(rule) == 1, f"{sys.argv[1]}: {len(rule)} PrometheusRule objects"
assert rule[0]["spec"] == yaml.safe_load(open(sys.argv[2])), "the PrometheusRule differs from files/alerts.yaml"
print(f"PrometheusRule: {sum(len(g['rules']) for g in rule[0]['spec']['groups'])} alerts, as tested")
PY
"$(dirname "$validate")/python" - "$out/monitored-fleet.yaml" <<'PY'
import json, sys, yaml
maps = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
boards = [json.loads(v) for m in maps for v in m["data"].values()]
assert len(boards) == 4 and all(b["panels"] for b in boards), f"{len(boards)} dashboards in ConfigMaps"
print(f"dashboards: {len(boards)} ConfigMaps for the Grafana sidecar, {sum(len(b['panels']) for b in boards)} panels")
PY
echo "chart-check: $(ls charts/checks/good/*.yaml | wc -l) value sets render valid objects, $(ls charts/checks/bad/*.yaml | wc -l) bad ones are refused, the dashboards and alerts pass their checks"
