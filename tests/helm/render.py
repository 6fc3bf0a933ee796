"""Drive the real Helm library (helm-python-sdk over libhelm_c) for tests/helm.rs.

There is no helm binary: helm-python-sdk binds Helm v4's Go SDK through a C ABI.
One JSON request on stdin, one JSON answer on stdout:

    {"action": "lint", "chart": DIR, "values": {...}, "namespace": NS}
        -> {"ok": true, "lint": {"total_charts_linted", "messages", "errors"}}
    {"action": "render", "chart": DIR, "values": {...}, "name": NAME, "namespace": NS}
        -> {"ok": true, "templates": {path: text}, "crds": [{"filename", "data"}]}

A Helm error (schema violation, `fail`, `required`, template error) is an answer,
not a crash: {"ok": false, "error_type": "HelmValuesError", "error": "..."}.
Exit status 0 means the request was carried out; anything else is a broken
driver or environment, reported on stderr.
"""

from __future__ import annotations

import json
import sys

import helm_python as helm


def lint(request: dict) -> dict:
    # strict: warnings fail the lint as errors do; kube_version pins the
    # chart's kubeVersion check to a supported release.
    report = helm.lint(
        request["chart"],
        request.get("values"),
        strict=True,
        namespace=request.get("namespace", "default"),
        kube_version="v1.31.0",
    )
    return {"ok": True, "lint": report}


def render(request: dict) -> dict:
    # Chart.render is `helm template`: it merges values, validates them
    # against values.schema.json, and renders offline (lookup returns nothing).
    with helm.Chart.load(request["chart"]) as chart:
        templates = chart.render(
            values=request.get("values"),
            name=request.get("name", "lorg"),
            namespace=request.get("namespace", "default"),
            is_install=True,
        )
        crds = [{"filename": c["filename"], "data": c["data"]} for c in chart.crds]
    return {"ok": True, "templates": templates, "crds": crds}


def main() -> int:
    request = json.load(sys.stdin)
    action = {"lint": lint, "render": render}.get(request.get("action"))
    if action is None:
        print(f"unknown action {request.get('action')!r}", file=sys.stderr)
        return 2
    try:
        answer = action(request)
    except helm.HelmError as error:
        answer = {"ok": False, "error_type": type(error).__name__, "error": str(error)}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
