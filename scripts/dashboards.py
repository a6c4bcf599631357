#!/usr/bin/env python3
"""Ruche's Grafana dashboards, generated from one source (charts/ruche/dashboards/dashboards.yaml).

    dashboards.py write   writes charts/ruche/files/dashboards/<uid>.json
    dashboards.py check   fails if those files are not what the source gives, and writes every
                          query as a recording rule into OUT/dashboard-queries.yaml, for
                          `promtool check rules` to parse
"""
import json
import os
import re
import sys

import yaml

SOURCE = "charts/ruche/dashboards/dashboards.yaml"
TARGET = "charts/ruche/files/dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(spec, index):
    width, height = 12, 8
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": spec["title"],
        "datasource": DATASOURCE,
        "gridPos": {"x": (index % 2) * width, "y": (index // 2) * height, "w": width, "h": height},
        "fieldConfig": {
            "defaults": {
                "unit": spec.get("unit", "short"),
                "custom": {"stacking": {"mode": "normal" if spec.get("stack") else "none", "group": "A"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": t["expr"],
                "legendFormat": t.get("legend", ""),
            }
            for i, t in enumerate(spec["targets"])
        ],
    }


def dashboard(spec):
    return {
        "uid": spec["uid"],
        "title": spec["title"],
        "description": spec.get("description", ""),
        "tags": ["ruche"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
                {
                    "name": "fleet",
                    "label": "Fleet",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": "label_values(ruche_operator_zone_slots, fleet)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                },
            ]
        },
        "panels": [panel(p, i) for i, p in enumerate(spec["panels"])],
    }


def render():
    with open(SOURCE) as f:
        source = yaml.safe_load(f)
    return {d["uid"]: json.dumps(dashboard(d), indent=2, sort_keys=True) + "\n" for d in source["dashboards"]}


def queries(rendered):
    """Every query, as a recording rule promtool can parse (Grafana's variables made concrete)."""
    rules = []
    for uid, text in sorted(rendered.items()):
        for p in json.loads(text)["panels"]:
            for t in p["targets"]:
                expr = t["expr"].replace("$__rate_interval", "5m").replace("$fleet", ".*")
                name = re.sub(r"[^a-z0-9_]", "_", f"{uid}_{p['id']}_{t['refId']}".lower())
                rules.append({"record": f"dashboard:{name}", "expr": expr})
    return {"groups": [{"name": "dashboard-queries", "rules": rules}]}


def exported():
    """The metric names the operator and the media node register (prefix, name, unit)."""
    names = set()
    for prefix, path in (("ruche_operator", "operator/src/metrics.rs"), ("ruche_media", "media-node/src/metrics.rs")):
        text = open(path).read()
        for m in re.finditer(r'register(?:ed|_with_unit)?\(\s*(?:&mut\s+)?(?:registry,\s*)?"([a-z_]+)",\s*"[^"]*",\s*(?:prometheus_client::registry::)?(Unit::Seconds)?', text):
            name = f"{prefix}_{m.group(1)}"
            names.add(name + ("_seconds" if m.group(2) else ""))
    return names


def unknown_metrics(exprs):
    """Metric names the queries use that nothing exports."""
    known = exported()
    missing = set()
    for expr in exprs:
        for name in re.findall(r"\b(ruche_(?:operator|media)_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            if name not in known and base not in known:
                missing.add(name)
    return sorted(missing)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    rendered = render()
    if mode == "write":
        os.makedirs(TARGET, exist_ok=True)
        for uid, text in rendered.items():
            with open(os.path.join(TARGET, f"{uid}.json"), "w") as f:
                f.write(text)
            print(f"wrote {TARGET}/{uid}.json")
        return 0
    stale = []
    for uid, text in rendered.items():
        path = os.path.join(TARGET, f"{uid}.json")
        if not os.path.exists(path) or open(path).read() != text:
            stale.append(path)
    extra = set(os.listdir(TARGET)) - {f"{uid}.json" for uid in rendered} if os.path.isdir(TARGET) else set()
    if stale or extra:
        print(f"dashboards: {', '.join(stale + sorted(extra))} not what {SOURCE} gives: run `make dashboards`", file=sys.stderr)
        return 1
    exprs = [r["expr"] for r in queries(rendered)["groups"][0]["rules"]]
    with open("charts/ruche/files/alerts.yaml") as f:
        exprs += [r["expr"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    missing = unknown_metrics(exprs)
    if missing:
        print(f"dashboards and alerts query metrics nothing exports: {', '.join(missing)}", file=sys.stderr)
        return 1
    out = os.environ.get("OUT", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "dashboard-queries.yaml"), "w") as f:
        yaml.safe_dump(queries(rendered), f, sort_keys=False)
    panels = sum(len(json.loads(t)["panels"]) for t in rendered.values())
    print(f"dashboards: {len(rendered)} dashboards, {panels} panels, current with {SOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
