"""Drift statistics against known distributions, and linear cost in the number of rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from ml_platform.core.drift import drift_table, reference_profile


def _frames(shift: float = 0.0, extra_level: bool = False, n: int = 20_000, seed: int = 1):
    rng = np.random.default_rng(seed)
    levels = list("xyzw") if extra_level else list("xyz")
    return pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.integers(0, 20 + 5 * extra_level, n).astype(float),
                         "c": rng.choice(levels, n)})


REFERENCE = reference_profile(_frames(n=50_000, seed=0), ["a", "b"], ["c"])


def test_no_drift_on_the_same_distribution():
    table = drift_table(_frames(), REFERENCE, warn=0.1, fail=0.25).set_index("feature")
    assert (table["status"] == "ok").all()
    assert (table["psi"] < 0.01).all() and table.loc["a", "ks"] < 0.02
    assert table.loc["c", "chi2_p"] > 0.001 and table.loc["c", "unseen_rate"] == 0


def test_shifts_and_unseen_levels_are_detected_and_ks_matches_scipy():
    live = _frames(shift=0.5, extra_level=True)
    table = drift_table(live, REFERENCE, warn=0.1, fail=0.25).set_index("feature")
    assert table.loc["a", "status"] in ("warn", "fail") and table.loc["c", "status"] == "fail"
    assert abs(table.loc["c", "unseen_rate"] - 0.25) < 0.02 and table.loc["c", "chi2_p"] < 1e-6
    reference = _frames(n=50_000, seed=0)
    assert abs(table.loc["b", "ks"] - ks_2samp(reference["b"], live["b"]).statistic) < 1e-9  # exact when discrete
    assert abs(table.loc["a", "ks"] - ks_2samp(reference["a"], live["a"]).statistic) < 0.02  # percentile grid


def test_missing_values_and_missing_features_have_clear_statuses():
    live = _frames().assign(a=np.nan)
    table = drift_table(live.drop(columns=["c"]), REFERENCE, warn=0.1, fail=0.25).set_index("feature")
    assert table.loc["a", "status"] == "no data" and table.loc["a", "missing_shift"] == 1.0
    assert table.loc["c", "status"] == "missing"
    empty = drift_table(_frames().iloc[0:0], REFERENCE, warn=0.1, fail=0.25)
    assert set(empty["status"]) == {"no data"}


def test_profile_is_small_and_json_ready():
    import json

    assert len(json.dumps(REFERENCE)) < 20_000
    assert REFERENCE["numeric"]["a"]["missing_rate"] == 0 and len(REFERENCE["numeric"]["a"]["edges"]) == 9
