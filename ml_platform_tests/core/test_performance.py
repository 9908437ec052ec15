"""Live performance with delayed labels, the online champion/challenger comparison and verdict, and the
rollback verdict on a fresh champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ml_platform.core.labels import Labels
from ml_platform.core.performance import (
    AnsweredRows,
    PairedDay,
    judge_challenger,
    judge_rollback,
    live_performance,
    paired_comparison,
)

RNG = np.random.default_rng(7)
N = 400
LABELS = pd.DataFrame({"id": [f"f{i}" for i in range(N)], "y": RNG.integers(0, 2, N)})
GOOD = np.clip(LABELS["y"] * 0.6 + RNG.uniform(0, 0.4, N), 0, 1)  # ranks outcomes well
NOISE = RNG.uniform(0, 1, N)  # ranks them at random


def _served(answer, version="1", shadow=None, shadow_version=None, routed="champion") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": LABELS["id"],
            "prediction": answer,
            "_version": version,
            "_shadow_version": shadow_version,
            "_shadow_prediction": shadow,
            "_routed": routed,
        }
    )


@pytest.mark.parametrize(
    "served, labels, status",
    [
        (pd.DataFrame(), LABELS, "no traffic"),
        (_served(GOOD).drop(columns="id"), LABELS, "no key"),
        (_served(GOOD), LABELS.iloc[0:0], "labels not arrived"),
        (_served(GOOD), LABELS.assign(id="other"), "labels not arrived"),
        (_served(GOOD), LABELS.head(100), "partial labels"),
        (_served(GOOD), LABELS, "complete"),
    ],
)
def test_live_performance_statuses(served, labels, status):
    result = live_performance(served, labels, "id", "y", "binary", "roc_auc")
    assert result.status.startswith(status)


def test_live_performance_scores_answer_and_shadow_per_version():
    result = live_performance(_served(GOOD, shadow=NOISE, shadow_version="2"), LABELS, "id", "y", "binary", "roc_auc")
    table = result.table.set_index(["role", "version"])["roc_auc"]
    assert table[("answer", "1")] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))
    assert table[("shadow", "2")] == pytest.approx(roc_auc_score(LABELS["y"], NOISE))
    assert result.labelled == N and result.coverage == 1.0


def test_shadow_and_canary_pair_the_same_versions_the_same_way():
    """Shadow: v1 answers, v2 scores beside it. Canary: v2 answers, v1 scores beside it. Same outcome."""
    shadow = paired_comparison(_served(GOOD, "1", NOISE, "2"), LABELS, "id", "y", "binary", "roc_auc")
    canary = paired_comparison(_served(NOISE, "2", GOOD, "1", routed="canary"), LABELS, "id", "y", "binary", "roc_auc")
    for table in (shadow, canary):
        (row,) = table.to_dict("records")
        assert (row["champion"], row["other"], row["rows"]) == ("1", "2", N)
        assert row["champion_value"] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))
        assert row["gain"] == pytest.approx(row["other_value"] - row["champion_value"]) and row["gain"] < 0


def test_a_mixed_day_pools_shadow_and_canary_rows_of_one_pair():
    half = N // 2
    served = pd.concat(
        [_served(GOOD, "1", NOISE, "2").head(half), _served(NOISE, "2", GOOD, "1", routed="canary").tail(N - half)]
    )
    (row,) = paired_comparison(served, LABELS, "id", "y", "binary", "roc_auc").to_dict("records")
    assert row["rows"] == N and row["champion_value"] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))


def test_a_lower_is_better_metric_gains_when_the_error_falls():
    labels = pd.DataFrame({"id": LABELS["id"], "y": RNG.normal(10, 2, N)})
    close, far = labels["y"] + RNG.normal(0, 0.1, N), labels["y"] + RNG.normal(0, 3, N)
    (row,) = paired_comparison(_served(far, "1", close, "2"), labels, "id", "y", "regression", "rmse").to_dict(
        "records"
    )
    assert row["gain"] == pytest.approx(row["champion_value"] - row["other_value"]) and row["gain"] > 0


@pytest.mark.parametrize(
    "served, labels",
    [
        (pd.DataFrame(), LABELS),
        (_served(GOOD), LABELS),  # no challenger on the day
        (_served(GOOD, "1", NOISE, "2"), LABELS.iloc[0:0]),  # labels not arrived
    ],
)
def test_nothing_to_compare_is_an_empty_table(served, labels):
    assert paired_comparison(served, labels, "id", "y", "binary", "roc_auc").empty


def _days(*gains, rows=300):
    """Daily paired comparisons, read from the performance asset's metadata entries as the sensor reads them."""
    return [PairedDay.from_metadata(f"2025-01-{i + 1:02d}", {"rows": rows, "gain": g}) for i, g in enumerate(gains)]


@pytest.mark.parametrize(
    "days, decision, words",
    [
        (_days(0.05, 0.04), "wait", "2 of 3 days"),
        (_days(0.05, 0.04, 0.03, rows=100), "wait", "need 500"),
        (_days(0.05, 0.04, 0.03), "promote", "better on 3 of 3 days"),
        (_days(-0.2, 0.05, 0.04, 0.03), "promote", "2025-01-02..2025-01-04"),  # only the newest window counts
        (_days(0.02, -0.05, 0.01), "retire", "does not win"),
        (_days(0.004, 0.004, 0.004), "retire", "at least 0.01"),
        (_days(0.0, 0.0, 0.0), "retire", "more than 0"),
    ],
)
def test_the_verdict_over_the_window(days, decision, words):
    verdict = judge_challenger(days, trial_days=3, min_rows=500, min_improvement=0.01 if "0.01" in words else 0)
    assert verdict.decision == decision and words in verdict.reason


def test_the_gain_is_weighted_by_rows_and_days_without_rows_do_not_count():
    days = [PairedDay("a", 900, 0.01), PairedDay("b", 100, -0.05), PairedDay("c", 0, None)]
    verdict = judge_challenger(days, trial_days=2, min_rows=500, min_improvement=0)
    assert verdict.decision == "promote" and verdict.gain == pytest.approx(0.004) and verdict.days == ("a", "b")


def _pairs(*gains, rows=300):
    """Daily paired comparisons of v2 (the new champion) with v1; `gain` > 0: v1 did better."""
    return [
        PairedDay.from_metadata(f"2025-02-{i + 1:02d}", {"champion": "2", "other": "1", "rows": rows, "gain": g})
        for i, g in enumerate(gains)
    ]


def _answered(v2: tuple[int, float], v1: tuple[int, float], metric="roc_auc") -> dict:
    """One day's metric per version that answered: (rows, value), as the performance asset's metadata keeps it."""
    return {"2": {"rows": v2[0], metric: v2[1]}, "1": {"rows": v1[0], metric: v1[1]}}


def _rollback(paired, answered=(), metric="roc_auc", tolerance=0.02, min_rows=500):
    days = [AnsweredRows.by_version(day, metric) for day in answered]
    return judge_rollback(paired, days, "2", "1", metric, tolerance, min_rows)


def test_a_new_champion_trailing_on_the_same_requests_is_rolled_back():
    verdict = _rollback(_pairs(0.05, 0.03))
    assert verdict.decision == "rollback" and verdict.gain == pytest.approx(0.04) and verdict.rows == 600
    assert verdict.reason == "live roc_auc of v2 trails v1 by 0.0400 > 0.02 on the same 600 labelled requests"
    assert verdict.days == ("2025-02-01", "2025-02-02")


@pytest.mark.parametrize("gains", [(0.01, 0.01), (0.02, 0.02), (-0.05, -0.01)])
def test_a_new_champion_within_the_tolerance_is_kept(gains):
    verdict = _rollback(_pairs(*gains))
    assert verdict.decision == "keep" and verdict.gain <= 0.02
    assert verdict.reason.startswith("v2 kept: v1 does better by ")
    assert verdict.reason.endswith(" roc_auc on the same 600 labelled requests, within 0.02")


def test_too_few_pairs_fall_back_to_each_version_on_the_days_it_answered():
    answered = [_answered((400, 0.70), (300, 0.80)), _answered((200, 0.64), (300, 0.76))]
    verdict = _rollback(_pairs(0.2, rows=100), answered)
    assert verdict.decision == "rollback" and verdict.gain == pytest.approx(0.78 - 0.68)
    assert verdict.reason.endswith("on the days each answered (v2: 600 rows, v1: 600 rows)")


def test_a_lower_is_better_metric_rolls_back_when_the_new_error_is_higher():
    higher_error = [_answered((600, 2.5), (600, 2.0), "rmse")]
    verdict = _rollback([], higher_error, metric="rmse", tolerance=0.1)
    assert verdict.decision == "rollback" and verdict.gain == pytest.approx(0.5)
    kept = _rollback([], [_answered((600, 2.0), (600, 2.5), "rmse")], metric="rmse", tolerance=0.1)
    assert kept.decision == "keep" and kept.gain == pytest.approx(-0.5)


@pytest.mark.parametrize("answered", [[], [_answered((600, 0.7), (100, 0.8))], [{"2": {"rows": 900, "roc_auc": 0.7}}]])
def test_without_enough_labelled_rows_of_both_versions_it_waits(answered):
    verdict = _rollback(_pairs(0.3, rows=50), answered)
    assert verdict.decision == "wait"
    assert verdict.reason.startswith("not enough labelled live rows yet (paired: 50; v2: ")
    assert verdict.reason.endswith("; need 500)")


def test_the_wait_names_every_count():
    verdict = _rollback([], [_answered((600, 0.7), (100, 0.8))])
    assert verdict.reason == "not enough labelled live rows yet (paired: 0; v2: 600, v1: 100; need 500)"


# --- text outcomes ----------------------------------------------------------------------------------------------

YES_NO = Labels("binary", ("no", "yes"))
ABC, ABCD = Labels("multiclass", ("a", "b", "c")), Labels("multiclass", ("a", "b", "c", "d"))


def _probabilities(truth: pd.Series, classes: tuple, good: bool, seed: int) -> list[list[float]]:
    """Rows of probabilities over `classes` that favour the true class (`good`) or are random."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, (len(truth), len(classes)))
    if good:
        for j, label in enumerate(classes):
            scores[(truth == label).to_numpy(), j] += 1.5
    return (scores / scores.sum(axis=1, keepdims=True)).tolist()


def test_text_outcomes_of_a_binary_model_are_encoded_with_its_labels():
    outcomes = LABELS.assign(y=np.where(LABELS["y"] == 1, "yes", "no"))
    result = live_performance(
        _served(GOOD, shadow=NOISE, shadow_version="2"),
        outcomes,
        "id",
        "y",
        "binary",
        "roc_auc",
        labels_of=lambda version: YES_NO,
    )
    table = result.table.set_index(["role", "version"])["roc_auc"]
    assert table[("answer", "1")] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))
    assert table[("shadow", "2")] == pytest.approx(roc_auc_score(LABELS["y"], NOISE))
    assert result.answer_value("roc_auc") == pytest.approx(roc_auc_score(LABELS["y"], GOOD))
    assert result.unseen_labels == {}


def test_text_outcomes_of_a_multiclass_model_and_an_outcome_it_never_saw():
    truth = pd.Series(np.random.default_rng(3).choice(["a", "b", "c", "d"], N, p=[0.3, 0.3, 0.3, 0.1]))
    served = _served(None).assign(_probabilities=_probabilities(truth, ABC.classes, True, 1))
    result = live_performance(
        served, LABELS.assign(y=truth), "id", "y", "multiclass", "macro_f1", labels_of=lambda version: ABC
    )
    known = (truth != "d").to_numpy()
    assert result.unseen_labels == {"d": int((~known).sum())} and result.status == "complete"
    scores = np.array(served["_probabilities"].tolist())[known]
    expected = f1_score(truth[known], np.array(ABC.classes)[scores.argmax(axis=1)], average="macro")
    (row,) = result.table.to_dict("records")
    assert row["macro_f1"] == pytest.approx(expected) and row["rows"] == known.sum()
    assert result.answer_value("macro_f1") == pytest.approx(expected)


def test_two_versions_with_different_classes_are_compared_on_the_union():
    """v1 knows a, b, c; v2 (in shadow) also d. The pair is scored on the rows both know, over a, b, c, d."""
    truth = pd.Series(np.random.default_rng(4).choice(["a", "b", "c", "d"], N))
    served = _served(None, "1", _probabilities(truth, ABCD.classes, True, 2), "2").assign(
        _probabilities=_probabilities(truth, ABC.classes, False, 3)
    )
    labels_of = {"1": ABC, "2": ABCD}.get
    (row,) = paired_comparison(
        served, LABELS.assign(y=truth), "id", "y", "multiclass", "macro_f1", labels_of=labels_of
    ).to_dict("records")
    both = (truth != "d").to_numpy()
    assert (row["champion"], row["other"], row["rows"]) == ("1", "2", both.sum())

    def macro_f1(column: str) -> float:
        predicted = np.array(served[column].tolist())[both].argmax(axis=1)
        return f1_score(truth[both], np.array(ABCD.classes)[predicted], average="macro", labels=list("abcd"))

    assert row["champion_value"] == pytest.approx(macro_f1("_probabilities"))
    assert row["other_value"] == pytest.approx(macro_f1("_shadow_prediction")) and row["gain"] > 0.3
    result = live_performance(served, LABELS.assign(y=truth), "id", "y", "multiclass", "macro_f1", labels_of)
    table = result.table.set_index(["role", "version"])
    assert table.loc[("answer", "1"), "rows"] == both.sum() and table.loc[("shadow", "2"), "rows"] == N
    assert result.unseen_labels == {"d": int((~both).sum())}
