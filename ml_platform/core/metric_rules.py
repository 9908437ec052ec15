"""Which way each metric points: a plain table and comparisons. (Which metric judges a task by default is the
spec's: `ModelSpec.gate_metric` and `ModelSpec.live_metric`.)

Kept apart from `evaluation` (which computes the metrics with pandas and scikit-learn) so the wiring, the gates
and the sensors can compare two values without importing either.
"""

from __future__ import annotations

#: Metrics where larger is better; the others (losses, errors) are better when smaller.
HIGHER_IS_BETTER = {"roc_auc", "pr_auc", "r2", "macro_f1", "accuracy"}


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` on `metric` (negative when worse), whichever way the metric points."""
    return new - old if metric in HIGHER_IS_BETTER else old - new


def meets(metric: str, value: float, bound: float) -> bool:
    """Whether `value` is on the good side of `bound`: at least it for roc_auc, at most it for rmse."""
    return value >= bound if metric in HIGHER_IS_BETTER else value <= bound
