"""What the champion stage decides for a newly evaluated version, as one pure decision over the registry:
promote it, hold it for a person's approval, put it on trial against live traffic, or record why not.

A version already decided keeps its decision: one that already holds `champion` is not promoted or audited
again, and a no-op retrain (the model step found the newest registered version unchanged) does not reopen
the decision taken for that version (a rejected, retired or rolled-back version stays where it is)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ml_platform.core.registry import Registry
from ml_platform.spec import ModelSpec


def decide_promotion(
    spec: ModelSpec, registry: Registry, evaluation: dict[str, Any], details: dict[str, Any]
) -> dict[str, Any]:
    """Act on an evaluation row (version, gates, metric, value) and return the audit record written."""
    rollout = spec.serving.rollout
    gates = json.loads(evaluation["gates"])
    details = {
        **details,
        "gates": {g["name"]: g["passed"] for g in gates},
        "metric": evaluation["metric"],
        "value": evaluation["value"],
        "champion_value": evaluation["champion_value"],
    }
    version = str(evaluation["version"])
    standing = _standing_decision(registry, version, bool(evaluation.get("noop", False)))
    if standing is not None:
        return standing
    if not evaluation["all_gates_passed"]:
        failed = [g["name"] for g in gates if not g["passed"]]
        return registry.record("gate-failed", version, f"gates failed: {', '.join(failed)}", details)
    if spec.gates.require_approval:
        return registry.record(
            "awaiting-approval", version, "every gate passed; gates.require_approval is set", details
        )
    if rollout.mode != "none" and registry.version_of("champion") not in (None, version):
        # stays `challenger`: the endpoint serves it in shadow or canary until the online comparison decides
        return registry.record(
            "online-trial",
            version,
            f"every gate passed; on trial in {rollout.mode} for {rollout.trial_days} days of labelled traffic",
            details,
        )
    return registry.promote(version, f"every gate passed ({evaluation['metric']} {evaluation['value']:.4f})", details)


def _standing_decision(registry: Registry, version: str, noop: bool) -> dict[str, Any] | None:
    """A decision record (not written: nothing changed) when `version` is already decided, else None."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if registry.version_of("champion") == version:
        return {
            "action": "unchanged",
            "version": version,
            "from_version": version,
            "at": at,
            "reason": f"v{version} already holds champion; nothing to promote or record",
        }
    if not noop:
        return None
    last = next(
        (
            record
            for record in reversed(registry.history())
            if version in (str(record.get("version")), str(record.get("from_version")))
            and record.get("action") != "promote-noop"
        ),
        None,
    )
    if last is None:  # never decided (e.g. its first run failed before this step): decide now
        return None
    return {
        "action": "unchanged",
        "version": version,
        "from_version": registry.version_of("champion"),
        "at": at,
        "reason": f"no-op retrain of v{version}: its decision stands ({last['action']} at {last['at']})",
    }
