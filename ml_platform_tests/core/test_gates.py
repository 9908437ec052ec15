"""Promotion gates: each threshold on hand-made evaluations, and real models (one trained on noise) on real days."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_platform.core import evaluation as ev
from ml_platform.core.gates import (
    FAIRNESS,
    GATE_NAMES,
    METRIC_FLOOR,
    NOT_WORSE,
    SANITY,
    fairness,
    metric_floor,
    not_worse_than_champion,
    prediction_sanity,
    run_gates,
)
from ml_platform.core.model import Model
from ml_platform.core.training import Split, train
from ml_platform.spec import Fairness, Gates, ModelSpec


def _evaluation(
    metric: str = "roc_auc",
    value: float = 0.8,
    champion: dict | None = None,
    gap: float | None = None,
    predictions=(0.1, 0.5, 0.9),
    task: str = "binary",
) -> ev.Evaluation:
    """An Evaluation built by hand: only what the gates read is meaningful."""
    predictions = np.asarray(predictions, dtype=float)
    fairness_gap = (
        None
        if gap is None
        else {"group": "origin", "metric": metric, "gap": gap, "best": "LGA", "worst": "EWR", "levels": 3}
    )
    return ev.Evaluation(
        metric=metric,
        metrics={metric: value},
        baseline={},
        slices=pd.DataFrame(),
        fairness=fairness_gap,
        attributions=pd.Series(dtype=float),
        sanity=ev.sanity(task, predictions),
        predictions=predictions,
        champion=champion,
    )


# --- each gate at its threshold -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "passed"), [(0.65, True), (0.9, True), (0.6499, False), (0.5, False)])
def test_metric_floor_for_a_higher_is_better_metric(value, passed):
    result = metric_floor(_evaluation(value=value), Gates(metric="roc_auc", min=0.65))
    assert result.name == METRIC_FLOOR and result.passed is passed
    assert result.value == value and result.threshold == 0.65
    assert result.detail == f"roc_auc {value:.4f} >= 0.65"


@pytest.mark.parametrize(("value", "passed"), [(12.0, True), (3.5, True), (12.001, False), (40.0, False)])
def test_a_lower_is_better_metric_uses_gates_max(value, passed):
    gates = Gates(metric="rmse", min=100.0, max=12.0)  # min bounds higher-is-better metrics: ignored for rmse
    result = metric_floor(_evaluation("rmse", value, task="regression", predictions=(1.0, 20.0)), gates)
    assert result.passed is passed and result.threshold == 12.0
    assert "<= 12.0" in result.detail


def test_metric_floor_without_a_threshold_passes_unless_the_metric_is_missing():
    assert metric_floor(_evaluation(value=0.51), Gates()).passed
    assert "no threshold set for roc_auc" in metric_floor(_evaluation(value=0.51), Gates()).detail
    undefined = _evaluation(value=0.8)
    undefined.metrics = {}  # e.g. roc_auc undefined on a one-class holdout
    assert not metric_floor(undefined, Gates()).passed
    assert not metric_floor(undefined, Gates(min=0.65)).passed


def test_not_worse_passes_without_a_champion_and_says_why():
    for champion in (None, {}, {"pr_auc": 0.9}):
        result = not_worse_than_champion(_evaluation(value=0.5, champion=champion), Gates(max_regression=0.01))
        assert result.name == NOT_WORSE and result.passed
        assert result.detail == "no champion yet: nothing to compare against"


@pytest.mark.parametrize(("new", "passed"), [(0.75, True), (0.875, True), (0.625, True), (0.6249, False), (0.5, False)])
def test_not_worse_allows_the_tolerated_regression(new, passed):
    # binary fractions, so "worse by exactly the tolerance" is exact in floating point
    result = not_worse_than_champion(_evaluation(value=new, champion={"roc_auc": 0.75}), Gates(max_regression=0.125))
    assert result.passed is passed
    assert result.value == pytest.approx(0.75 - new) and result.threshold == 0.125


@pytest.mark.parametrize(("old", "new", "passed"), [(0.75, 0.74, True), (0.8, 0.79, True), (0.8, 0.7899, False)])
def test_worse_by_exactly_a_decimal_tolerance_passes(old, new, passed):
    assert 0.75 - 0.74 > 0.01  # the float rounding the gate must absorb
    result = not_worse_than_champion(_evaluation(value=new, champion={"roc_auc": old}), Gates(max_regression=0.01))
    assert result.passed is passed


@pytest.mark.parametrize(("new", "passed"), [(10.0, True), (8.0, True), (10.5, True), (10.6, False)])
def test_not_worse_for_a_lower_is_better_metric(new, passed):
    evaluation = _evaluation("rmse", new, champion={"rmse": 10.0}, task="regression", predictions=(1.0, 2.0))
    result = not_worse_than_champion(evaluation, Gates(max_regression=0.5))
    assert result.passed is passed and result.value == pytest.approx(new - 10.0)


@pytest.mark.parametrize(("gap", "passed"), [(0.0, True), (0.08, True), (0.0801, False), (0.3, False)])
def test_fairness_gap_at_its_threshold(gap, passed):
    result = fairness(_evaluation(gap=gap), Gates(fairness=Fairness(group="origin", max_gap=0.08)))
    assert result.name == FAIRNESS and result.passed is passed
    assert result.value == gap and result.threshold == 0.08
    assert "best LGA, worst EWR" in result.detail


def test_fairness_passes_with_a_reason_when_nothing_can_be_compared():
    assert "no sensitive group" in fairness(_evaluation(gap=0.5), Gates()).detail
    assert fairness(_evaluation(gap=0.5), Gates()).passed
    few_levels = fairness(_evaluation(gap=None), Gates(fairness=Fairness(group="origin", max_gap=0.08)))
    assert few_levels.passed and "fewer than two levels of origin" in few_levels.detail


@pytest.mark.parametrize(
    ("predictions", "passed", "problem"),
    [
        ((0.1, 0.5, 0.9), True, None),
        ((0.3, 0.3, 0.3), False, "constant"),
        ((0.1, np.nan, 0.9), False, "not finite"),
        ((0.1, 1.2, 0.9), False, "out of range"),
    ],
)
def test_prediction_sanity(predictions, passed, problem):
    result = prediction_sanity(_evaluation(predictions=predictions), Gates())
    assert result.name == SANITY and result.passed is passed
    if problem:
        assert problem in result.detail
    else:
        assert result.detail == "predictions finite, in range, varied"


def test_run_gates_returns_every_gate_in_order():
    results = run_gates(_evaluation(), Gates())
    assert tuple(r.name for r in results) == GATE_NAMES
    assert all(r.passed for r in results)
    assert set(results[0].as_dict()) == {"name", "passed", "detail", "value", "threshold"}


# --- real models on real days -------------------------------------------------------------------------------


def _gates(model: Model, spec: ModelSpec, split: Split, champion: Model | None = None) -> tuple[ev.Evaluation, dict]:
    gates = spec.gates
    result = ev.evaluate(
        model, split.train, split.test, gates.metric, gates.slices, gates.fairness.group, champion=champion, plots=False
    )
    return result, {g.name: g for g in run_gates(result, gates)}


def test_a_model_trained_on_shuffled_labels_is_stopped(spec, split, model):
    # One permutation over train and validation together: shuffled within each split, the labels would keep
    # each split's delay rate, which a refitted model learns from features that tell the weeks apart.
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.concatenate([split.train["delayed"].to_numpy(), split.valid["delayed"].to_numpy()]))
    shuffled = Split(
        train=split.train.assign(delayed=labels[: len(split.train)]),
        valid=split.valid.assign(delayed=labels[len(split.train) :]),
        test=split.test,
    )
    noise = train(spec, shuffled).model
    result, gates = _gates(noise, spec, split)
    assert abs(result.metrics["roc_auc"] - 0.5) < 0.05
    assert not gates[METRIC_FLOOR].passed and gates[METRIC_FLOOR].threshold == spec.gates.min == 0.65
    assert not all(g.passed for g in gates.values())
    # against the real champion it also fails the regression gate
    _, against_champion = _gates(noise, spec, split, champion=model)
    assert not against_champion[NOT_WORSE].passed and against_champion[NOT_WORSE].value > 0.1


def test_a_real_model_passes_every_gate_against_itself_as_champion(spec, split, model):
    result, gates = _gates(model, spec, split, champion=model)
    assert gates[NOT_WORSE].passed and gates[NOT_WORSE].value == 0
    assert gates[METRIC_FLOOR].passed and result.metrics["roc_auc"] > spec.gates.min
    assert gates[SANITY].passed and gates[FAIRNESS].passed
    assert "vs champion" in gates[NOT_WORSE].detail


def test_a_real_model_without_champion_passes_not_worse_with_a_reason(spec, split, model):
    _, gates = _gates(model, spec, split)
    assert gates[NOT_WORSE].passed and "no champion" in gates[NOT_WORSE].detail
