#!/usr/bin/env python3
"""Summarises rendered Kubernetes manifests (stdin, multi-document YAML) as one JSON line for
protolab's tests: each resource's kind and name, and the settings the tests check (pod
security, Job parallelism and command, Ingress annotations, HPA target)."""
import json
import sys

import yaml

resources = []
for doc in yaml.safe_load_all(sys.stdin):
    if not doc:
        continue
    entry = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
    spec = doc.get("spec", {})
    template = spec.get("template", {}).get("spec")
    if template:
        pod_security = template.get("securityContext", {})
        entry["containers"] = [
            {
                "image": c.get("image"),
                "args": c.get("args", []),
                "run_as_non_root": pod_security.get("runAsNonRoot", False),
                "read_only_root": c.get("securityContext", {}).get("readOnlyRootFilesystem", False),
                "no_privilege_escalation": c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
                "capabilities_dropped": c.get("securityContext", {}).get("capabilities", {}).get("drop", []),
            }
            for c in template.get("containers", [])
        ]
    if doc["kind"] == "Job":
        entry["parallelism"] = spec.get("parallelism")
    if doc["kind"] == "Ingress":
        entry["annotations"] = doc["metadata"].get("annotations", {})
    if doc["kind"] == "HorizontalPodAutoscaler":
        entry["target"] = spec["scaleTargetRef"]["name"]
        entry["min"] = spec.get("minReplicas")
        entry["max"] = spec.get("maxReplicas")
    resources.append(entry)
print(json.dumps(resources))
