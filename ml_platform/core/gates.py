"""Promotion gates: pure decisions over an Evaluation and the spec's thresholds.

A gate that has nothing to compare (no champion yet, no threshold set) passes and says why, so the record
always shows every gate and its reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ml_platform.core.metric_rules import HIGHER_IS_BETTER, improvement, meets

if TYPE_CHECKING:
    from ml_platform.core.evaluation import Evaluation
    from ml_platform.spec import Gates

METRIC_FLOOR, NOT_WORSE, FAIRNESS, SANITY = (
    "metric_floor",
    "not_worse_than_champion",
    "fairness_gap",
    "prediction_sanity",
)
GATE_NAMES = (METRIC_FLOOR, NOT_WORSE, FAIRNESS, SANITY)


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_floor(evaluation: Evaluation, gates: Gates) -> GateResult:
    metric, value = evaluation.metric, evaluation.value
    higher = metric in HIGHER_IS_BETTER
    threshold = gates.min if higher else gates.max
    if threshold is None:
        return GateResult(METRIC_FLOOR, not math.isnan(value), f"no threshold set for {metric}", value)
    passed = meets(metric, value, threshold)
    relation = ">=" if higher else "<="
    return GateResult(METRIC_FLOOR, bool(passed), f"{metric} {value:.4f} {relation} {threshold}", value, threshold)


def not_worse_than_champion(evaluation: Evaluation, gates: Gates) -> GateResult:
    metric = evaluation.metric
    if not evaluation.champion or metric not in evaluation.champion:
        return GateResult(NOT_WORSE, True, "no champion yet: nothing to compare against")
    new, old = evaluation.value, evaluation.champion[metric]
    worse_by = -improvement(metric, new, old)
    passed = worse_by <= gates.max_regression + 1e-12  # "worse by exactly the tolerance" passes despite rounding
    return GateResult(
        NOT_WORSE,
        bool(passed),
        f"{metric} {new:.4f} vs champion {old:.4f} on the same holdout "
        f"(worse by {worse_by:+.4f}, tolerance {gates.max_regression})",
        worse_by,
        gates.max_regression,
    )


def fairness(evaluation: Evaluation, gates: Gates) -> GateResult:
    if gates.fairness is None:
        return GateResult(FAIRNESS, True, "no sensitive group named in gates.fairness")
    gap = evaluation.fairness
    if gap is None:
        return GateResult(FAIRNESS, True, f"fewer than two levels of {gates.fairness.group} with enough rows")
    passed = gap["gap"] <= gates.fairness.max_gap
    return GateResult(
        FAIRNESS,
        bool(passed),
        f"{gap['metric']} gap across {gap['group']} {gap['gap']:.4f} (best {gap['best']}, worst "
        f"{gap['worst']}) <= {gates.fairness.max_gap}",
        gap["gap"],
        gates.fairness.max_gap,
    )


def prediction_sanity(evaluation: Evaluation, gates: Gates) -> GateResult:
    s = evaluation.sanity
    problems = [
        name
        for name, bad in (
            ("not finite", not s["finite"]),
            ("out of range", not s["in_range"]),
            ("constant", s["constant"]),
        )
        if bad
    ]
    return GateResult(
        SANITY,
        s["passed"],
        "predictions finite, in range, varied" if not problems else "predictions " + ", ".join(problems),
        s["std"],
    )


def run_gates(evaluation: Evaluation, gates: Gates) -> list[GateResult]:
    return [gate(evaluation, gates) for gate in (metric_floor, not_worse_than_champion, fairness, prediction_sanity)]
