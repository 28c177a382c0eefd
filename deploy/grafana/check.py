#!/usr/bin/env python3
"""Lints the Grafana dashboard: valid JSON, unique panel ids, every panel on
the provisioned data source, and every PromQL query accepted by
`promtool check rules` (queries are wrapped in a throwaway rule file)."""
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "dashboards", "openptl.json")) as f:
    dashboard = json.load(f)
ids = [p["id"] for p in dashboard["panels"]]
assert len(ids) == len(set(ids)), "panel ids must be unique"
rules = []
for p in dashboard["panels"]:
    for t in p.get("targets", []):
        assert t["datasource"]["uid"] == "openptl-prometheus", p["title"]
        expr = t["expr"].replace("$trust", ".*")
        rules.append({"record": f"check:panel_{p['id']}_{t['refId']}", "expr": expr})
with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    path = f.name
try:
    result = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
finally:
    os.unlink(path)
print(result.stdout.strip(), result.stderr.strip())
print(f"{len(rules)} dashboard queries checked")
sys.exit(result.returncode)
