"""What the champion stage decides for a newly evaluated version, as one pure decision over the registry:
promote it, hold it for a person's approval, put it on trial against live traffic, or record why not.

A version already decided keeps its decision: one that already holds `champion` is not promoted or audited
again, and a no-op retrain (the model step found the newest registered version unchanged) does not reopen
the decision taken for that version (a rejected, retired or rolled-back version stays where it is)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ml_platform.core.registry import Registry
from ml_platform.spec import ModelSpec


@dataclass(frozen=True, slots=True)
class EvaluatedVersion:
    """What the champion stage decides on: the evaluation stage's verdict on a version. `gates`: each gate's
    name and whether it passed, in the order they ran; `noop`: the version came from a no-op retrain."""

    version: str
    metric: str
    value: float
    champion_value: float | None
    gates: Mapping[str, bool]
    all_gates_passed: bool
    noop: bool = False

    @classmethod
    def from_stored(cls, stored: Mapping[Any, Any]) -> EvaluatedVersion:
        """The verdict from the evaluation stage's stored row (gates as JSON text); a row stored before no-op
        retrains existed has no `noop`."""
        row = {str(k): v for k, v in stored.items()}
        return cls(
            str(row["version"]),
            row["metric"],
            row["value"],
            row["champion_value"],
            {g["name"]: g["passed"] for g in json.loads(row["gates"])},
            bool(row["all_gates_passed"]),
            bool(row.get("noop", False)),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What the champion stage decided, and the audit record it wrote (`audit`, as the registry keeps it; a
    standing decision is not written again)."""

    action: str
    version: str | None
    reason: str
    at: str
    audit: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of_audit(cls, record: Mapping[str, Any]) -> Decision:
        return cls(record["action"], record["version"], record["reason"], record["at"], dict(record))


def decide_promotion(
    spec: ModelSpec, registry: Registry, evaluation: EvaluatedVersion, details: dict[str, Any]
) -> Decision:
    """Act on the evaluation stage's verdict on a version and return the decision (and the audit record)."""
    rollout = spec.serving.rollout
    details = {
        **details,
        "gates": dict(evaluation.gates),
        "metric": evaluation.metric,
        "value": evaluation.value,
        "champion_value": evaluation.champion_value,
    }
    version = evaluation.version
    standing = _standing_decision(registry, version, evaluation.noop)
    if standing is not None:
        return standing
    if not evaluation.all_gates_passed:
        failed = [name for name, passed in evaluation.gates.items() if not passed]
        return Decision.of_audit(registry.record("gate-failed", version, f"gates failed: {', '.join(failed)}", details))
    if spec.gates.require_approval:
        return Decision.of_audit(
            registry.record("awaiting-approval", version, "every gate passed; gates.require_approval is set", details)
        )
    if rollout.mode != "none" and registry.version_of("champion") not in (None, version):
        # stays `challenger`: the endpoint serves it in shadow or canary until the online comparison decides
        return Decision.of_audit(
            registry.record(
                "online-trial",
                version,
                f"every gate passed; on trial in {rollout.mode} for {rollout.trial_days} days of labelled traffic",
                details,
            )
        )
    return Decision.of_audit(
        registry.promote(version, f"every gate passed ({evaluation.metric} {evaluation.value:.4f})", details)
    )


def _standing_decision(registry: Registry, version: str, noop: bool) -> Decision | None:
    """A decision (not written: nothing changed) when `version` is already decided, else None."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if registry.version_of("champion") == version:
        return Decision.of_audit(
            {
                "action": "unchanged",
                "version": version,
                "from_version": version,
                "at": at,
                "reason": f"v{version} already holds champion; nothing to promote or record",
            }
        )
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
    return Decision.of_audit(
        {
            "action": "unchanged",
            "version": version,
            "from_version": registry.version_of("champion"),
            "at": at,
            "reason": f"no-op retrain of v{version}: its decision stands ({last['action']} at {last['at']})",
        }
    )
