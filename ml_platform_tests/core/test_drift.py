"""Drift statistics against known distributions, and linear cost in the number of rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from ml_platform.core.drift import drift_table, reference_profile


def _frames(shift: float = 0.0, extra_level: bool = False, n: int = 20_000, seed: int = 1):
    rng = np.random.default_rng(seed)
    levels = list("xyzw") if extra_level else list("xyz")
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1, n),
            "b": rng.integers(0, 20 + 5 * extra_level, n).astype(float),
            "c": rng.choice(levels, n),
        }
    )


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


def _as_categories(frame: pd.DataFrame, names: list[str], extra: tuple = ()) -> pd.DataFrame:
    """The frame with the named columns as pandas Categoricals, plus levels no row has (zero counts)."""
    out = frame.copy()
    for name in names:
        levels = sorted(set(frame[name].dropna())) + list(extra)
        out[name] = pd.Categorical(frame[name], categories=levels)
    return out


def test_categorical_input_gives_the_same_profile_and_drift_as_text():
    """Value counts of a Categorical include levels with no row: the reference and every drift figure (PSI,
    chi-square p, unseen and missing rates) must be those of the same values as object text."""
    reference = _frames(n=50_000, seed=0)
    reference.loc[reference.index[:500], "c"] = np.nan
    live = _frames(shift=0.3, extra_level=True, seed=3)
    live.loc[live.index[:900], "c"] = np.nan
    text_profile = reference_profile(reference, ["a", "b"], ["c"])
    category_profile = reference_profile(_as_categories(reference, ["c"], extra=("never",)), ["a", "b"], ["c"])
    assert category_profile == text_profile
    levels = [list(profile["categorical"]["c"]["proportions"]) for profile in (category_profile, text_profile)]
    assert levels[0] == levels[1]  # the same order too (it orders the PSI sum)
    as_text = drift_table(live, text_profile, warn=0.1, fail=0.25)
    as_categories = drift_table(
        _as_categories(live, ["c"], extra=("unused", "never")), text_profile, warn=0.1, fail=0.25
    )
    pd.testing.assert_frame_equal(as_categories, as_text, check_exact=True)
    row = as_text.set_index("feature").loc["c"]
    assert row["unseen_rate"] > 0.2 and row["missing_rate"] > 0.04 and row["psi"] > 0


def test_a_real_models_training_reference_is_the_same_for_categoricals_and_text(model, split):
    from ml_platform.core.drift import training_reference

    categorical = model.encoder.categorical
    as_text = split.train.astype(dict.fromkeys(categorical, object))
    assert all(isinstance(split.train[name].dtype, pd.CategoricalDtype) for name in categorical)
    reference = training_reference(model, split.train)
    assert reference == training_reference(model, as_text)
    live = split.test
    table = drift_table(live, reference, warn=0.1, fail=0.25)
    pd.testing.assert_frame_equal(
        table,
        drift_table(live.astype(dict.fromkeys(categorical, object)), reference, warn=0.1, fail=0.25),
        check_exact=True,
    )
    scored = table.set_index("feature").loc[categorical]
    assert scored["psi"].notna().all() and scored["chi2_p"].notna().all()


@pytest.fixture(scope="module")
def origin_model(split):
    """A real 3-class model of the flights' origin airport (text labels) on the session's training rows."""
    from ml_platform_tests.core.text_classifier import origin_model

    return origin_model(split.train)


def test_a_multiclass_reference_holds_the_predicted_class_as_a_categorical(origin_model, split):
    from ml_platform.core.drift import predicted_class, training_reference

    reference = training_reference(origin_model, split.train)
    assert "prediction" not in reference["numeric"] and reference["prediction_classes"] == ["EWR", "JFK", "LGA"]
    proportions = reference["categorical"]["prediction"]["proportions"]
    assert set(proportions) <= {"EWR", "JFK", "LGA"} and sum(proportions.values()) == pytest.approx(1)
    # live rows: the logged probability vectors give the same predicted classes; a wrong-length one is left out
    live = split.test.head(300)
    vectors = pd.Series([*origin_model.predict(live).tolist()[:-1], [0.5, 0.5]])
    names, wrong = predicted_class(vectors, reference["prediction_classes"])
    assert wrong == 1 and pd.isna(names.iloc[-1])
    assert names.iloc[:-1].tolist() == origin_model.predict_labels(live)[:-1]
    table = drift_table(live.assign(prediction=names.to_numpy()), reference, 0.1, 0.25).set_index("feature")
    assert table.loc["prediction", "type"] == "categorical" and table.loc["prediction", "unseen_rate"] == 0
    assert table.loc["prediction", "psi"] >= 0 and table.loc["prediction", "missing_rate"] == pytest.approx(1 / 300)
