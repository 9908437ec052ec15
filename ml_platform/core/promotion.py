"""What the champion stage decides for a newly evaluated version, as one pure decision over the registry:
promote it, hold it for a person's approval, put it on trial against live traffic, or record why not."""

from __future__ import annotations

import json

from ml_platform.core.registry import Registry
from ml_platform.spec import ModelSpec


def decide_promotion(spec: ModelSpec, registry: Registry, evaluation: dict, details: dict) -> dict:
    """Act on an evaluation row (version, gates, metric, value) and return the audit record written."""
    rollout = spec.serving.rollout
    gates = json.loads(evaluation["gates"])
    details = {**details, "gates": {g["name"]: g["passed"] for g in gates}, "metric": evaluation["metric"],
               "value": evaluation["value"], "champion_value": evaluation["champion_value"]}
    version = str(evaluation["version"])
    if not evaluation["all_gates_passed"]:
        failed = [g["name"] for g in gates if not g["passed"]]
        return registry.record("gate-failed", version, f"gates failed: {', '.join(failed)}", details)
    if spec.gates.require_approval:
        return registry.record("awaiting-approval", version, "every gate passed; gates.require_approval is set",
                               details)
    if rollout.mode != "none" and registry.version_of("champion") not in (None, version):
        # stays `challenger`: the endpoint serves it in shadow or canary until the online comparison decides
        return registry.record("online-trial", version, f"every gate passed; on trial in {rollout.mode} for "
                               f"{rollout.trial_days} days of labelled traffic", details)
    return registry.promote(version, f"every gate passed ({evaluation['metric']} {evaluation['value']:.4f})",
                            details)
