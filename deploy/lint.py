#!/usr/bin/env python3
"""Lints what can be linted here without a cluster or a Docker daemon:
the Kubernetes manifests (YAML, kinds, probes on real routes, non-root),
the systemd unit (sections, an ExecStart that names a real subcommand) and
the Dockerfile (multi-stage, non-root, a volume)."""
import configparser
import os
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
routes = {"/healthz", "/readyz", "/metrics"}
problems = []

for name in sorted(os.listdir(os.path.join(here, "kubernetes"))):
    with open(os.path.join(here, "kubernetes", name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in doc:
                problems.append(f"{name}: a document lacks {key}")
        if doc.get("kind") in ("StatefulSet", "Deployment"):
            pod = doc["spec"]["template"]["spec"]
            if not pod.get("securityContext", {}).get("runAsNonRoot"):
                problems.append(f"{name}: pods must run as non-root")
            for c in pod["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    path = c.get(probe, {}).get("httpGet", {}).get("path")
                    if path not in routes:
                        problems.append(f"{name}: {probe} path {path!r} is not a route of the service")
        if doc.get("kind") == "StatefulSet" and doc["spec"].get("replicas") != 1:
            problems.append(f"{name}: the embedded store has one writer: replicas must be 1")

unit = configparser.ConfigParser(strict=False, interpolation=None)
unit.optionxform = str
unit.read(os.path.join(here, "systemd", "openptl.service"))
for section in ("Unit", "Service", "Install"):
    if section not in unit:
        problems.append(f"openptl.service: no [{section}]")
if "serve" not in unit["Service"].get("ExecStart", ""):
    problems.append("openptl.service: ExecStart must run `openptl serve`")
if unit["Service"].get("User") in (None, "root"):
    problems.append("openptl.service: run as a dedicated user")

with open(os.path.join(here, "Dockerfile")) as f:
    dockerfile = f.read()
if dockerfile.count("FROM ") < 2:
    problems.append("Dockerfile: build in one stage, run in another")
if "\nUSER " not in dockerfile or "USER root" in dockerfile:
    problems.append("Dockerfile: the runtime stage must switch to a non-root USER")
if "VOLUME" not in dockerfile:
    problems.append("Dockerfile: declare the data volume")

for p in problems:
    print("deploy lint:", p)
print(f"deploy lint: {len(problems)} problems")
sys.exit(1 if problems else 0)
