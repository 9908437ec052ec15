"""Live performance with delayed labels, and the online champion/challenger comparison and verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ml_platform.core.performance import judge_challenger, live_performance, paired_comparison

RNG = np.random.default_rng(7)
N = 400
LABELS = pd.DataFrame({"id": [f"f{i}" for i in range(N)], "y": RNG.integers(0, 2, N)})
GOOD = np.clip(LABELS["y"] * 0.6 + RNG.uniform(0, 0.4, N), 0, 1)   # ranks outcomes well
NOISE = RNG.uniform(0, 1, N)                                         # ranks them at random


def _served(answer, version="1", shadow=None, shadow_version=None, routed="champion") -> pd.DataFrame:
    return pd.DataFrame({"id": LABELS["id"], "prediction": answer, "_version": version,
                         "_shadow_version": shadow_version, "_shadow_prediction": shadow, "_routed": routed})


@pytest.mark.parametrize("served, labels, status", [
    (pd.DataFrame(), LABELS, "no traffic"),
    (_served(GOOD).drop(columns="id"), LABELS, "no key"),
    (_served(GOOD), LABELS.iloc[0:0], "labels not arrived"),
    (_served(GOOD), LABELS.assign(id="other"), "labels not arrived"),
    (_served(GOOD), LABELS.head(100), "partial labels"),
    (_served(GOOD), LABELS, "complete"),
])
def test_live_performance_statuses(served, labels, status):
    result = live_performance(served, labels, "id", "y", "binary", "roc_auc")
    assert result["status"].startswith(status)


def test_live_performance_scores_answer_and_shadow_per_version():
    result = live_performance(_served(GOOD, shadow=NOISE, shadow_version="2"), LABELS, "id", "y", "binary", "roc_auc")
    table = result["table"].set_index(["role", "version"])["roc_auc"]
    assert table[("answer", "1")] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))
    assert table[("shadow", "2")] == pytest.approx(roc_auc_score(LABELS["y"], NOISE))
    assert result["labelled"] == N and result["coverage"] == 1.0


def test_shadow_and_canary_pair_the_same_versions_the_same_way():
    """Shadow: v1 answers, v2 scores beside it. Canary: v2 answers, v1 scores beside it. Same outcome."""
    shadow = paired_comparison(_served(GOOD, "1", NOISE, "2"), LABELS, "id", "y", "binary", "roc_auc")
    canary = paired_comparison(_served(NOISE, "2", GOOD, "1", routed="canary"), LABELS, "id", "y", "binary",
                               "roc_auc")
    for table in (shadow, canary):
        (row,) = table.to_dict("records")
        assert (row["champion"], row["other"], row["rows"]) == ("1", "2", N)
        assert row["champion_value"] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))
        assert row["gain"] == pytest.approx(row["other_value"] - row["champion_value"]) and row["gain"] < 0


def test_a_mixed_day_pools_shadow_and_canary_rows_of_one_pair():
    half = N // 2
    served = pd.concat([_served(GOOD, "1", NOISE, "2").head(half),
                        _served(NOISE, "2", GOOD, "1", routed="canary").tail(N - half)])
    (row,) = paired_comparison(served, LABELS, "id", "y", "binary", "roc_auc").to_dict("records")
    assert row["rows"] == N and row["champion_value"] == pytest.approx(roc_auc_score(LABELS["y"], GOOD))


def test_a_lower_is_better_metric_gains_when_the_error_falls():
    labels = pd.DataFrame({"id": LABELS["id"], "y": RNG.normal(10, 2, N)})
    close, far = labels["y"] + RNG.normal(0, 0.1, N), labels["y"] + RNG.normal(0, 3, N)
    (row,) = paired_comparison(_served(far, "1", close, "2"), labels, "id", "y", "regression",
                               "rmse").to_dict("records")
    assert row["gain"] == pytest.approx(row["champion_value"] - row["other_value"]) and row["gain"] > 0


@pytest.mark.parametrize("served, labels", [
    (pd.DataFrame(), LABELS),
    (_served(GOOD), LABELS),                       # no challenger on the day
    (_served(GOOD, "1", NOISE, "2"), LABELS.iloc[0:0]),  # labels not arrived
])
def test_nothing_to_compare_is_an_empty_table(served, labels):
    assert paired_comparison(served, labels, "id", "y", "binary", "roc_auc").empty


def _days(*gains, rows=300):
    return [{"day": f"2025-01-{i + 1:02d}", "rows": rows, "gain": g} for i, g in enumerate(gains)]


@pytest.mark.parametrize("days, decision, words", [
    (_days(0.05, 0.04), "wait", "2 of 3 days"),
    (_days(0.05, 0.04, 0.03, rows=100), "wait", "need 500"),
    (_days(0.05, 0.04, 0.03), "promote", "better on 3 of 3 days"),
    (_days(-0.2, 0.05, 0.04, 0.03), "promote", "2025-01-02..2025-01-04"),  # only the newest window counts
    (_days(0.02, -0.05, 0.01), "retire", "does not win"),
    (_days(0.004, 0.004, 0.004), "retire", "at least 0.01"),
    (_days(0.0, 0.0, 0.0), "retire", "more than 0"),
])
def test_the_verdict_over_the_window(days, decision, words):
    verdict = judge_challenger(days, window_days=3, min_rows=500, min_improvement=0.01 if "0.01" in words else 0)
    assert verdict.decision == decision and words in verdict.reason


def test_the_gain_is_weighted_by_rows_and_days_without_rows_do_not_count():
    days = [{"day": "a", "rows": 900, "gain": 0.01}, {"day": "b", "rows": 100, "gain": -0.05},
            {"day": "c", "rows": 0, "gain": None}]
    verdict = judge_challenger(days, window_days=2, min_rows=500, min_improvement=0)
    assert verdict.decision == "promote" and verdict.gain == pytest.approx(0.004) and verdict.days == ("a", "b")
