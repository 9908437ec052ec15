"""Drift statistics against known distributions, and linear cost in the number of rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from ml_platform.core.drift import ReferenceProfile, drift_table, reference_profile


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


def _plain_figures(live: pd.DataFrame, profile: ReferenceProfile) -> dict[str, dict[str, float | None]]:
    """Each feature's figures computed the plain way, as a check on the counting shortcuts: numeric values sorted
    and the reference's cut points looked up in them, categorical values each converted to text."""
    from collections import Counter

    from scipy.stats import chi2

    figures: dict[str, dict[str, float | None]] = {}
    for name, numeric in profile["numeric"].items():
        values = pd.to_numeric(live[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        ordered = np.sort(values[~np.isnan(values)])
        n = len(ordered)
        below_edges = np.searchsorted(ordered, numeric["edges"], side="left")  # how many are < each edge
        bins = np.diff(np.concatenate([[0], below_edges, [n]]))
        at_or_below_grid = np.searchsorted(ordered, numeric["grid"], side="right")
        figures[name] = {
            "missing_rate": 1 - n / len(values),
            "psi": _plain_psi(np.asarray(numeric["proportions"]), bins / n) if n else None,
            "ks": float(np.max(np.abs(at_or_below_grid / n - np.asarray(numeric["cdf"])))) if n else None,
            "chi2_p": None,
            "unseen_rate": None,
        }
    for name, categorical in profile["categorical"].items():
        text = Counter(live[name].dropna().astype(str))
        n, levels = text.total(), list(categorical["proportions"])
        known = np.asarray([text[level] for level in levels], dtype=float)
        unseen = float(n - known.sum())
        actual = np.append(known, unseen) / n
        expected = np.append(np.asarray([categorical["proportions"][level] for level in levels]), 0.0)
        clipped = np.clip(expected, 1e-4, None) * n
        statistic = float(np.sum((actual * n - clipped) ** 2 / clipped))
        figures[name] = {
            "missing_rate": 1 - n / len(live),
            "psi": _plain_psi(expected, actual),
            "ks": None,
            "chi2_p": float(chi2.sf(statistic, max(len(levels), 1))),
            "unseen_rate": unseen / n,
        }
    return figures


def _plain_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _assert_same_figures(live: pd.DataFrame, profile: ReferenceProfile) -> pd.DataFrame:
    table = drift_table(live, profile, warn=0.1, fail=0.25).set_index("feature")
    plain = _plain_figures(live, profile)
    assert set(table.index) == set(plain)
    for name, figures in plain.items():
        for figure, expected in figures.items():
            got = table[figure].astype(float)[name]
            if expected is None:
                assert np.isnan(got), (name, figure, got)
            else:
                assert got == expected, (name, figure, got, expected)  # the same counts: the same floats
    return table


@pytest.fixture(scope="module")
def flights(split, spec):
    """Real flight features with a prediction column: (training rows, later rows, numeric and categorical names).
    `month_level` is a categorical with numeric levels (the reference names them "5", "6")."""
    rng = np.random.default_rng(7)
    numeric, categorical = [*spec.features.all_numeric, "prediction"], [*spec.features.all_categorical, "month_level"]

    def with_extras(frame: pd.DataFrame) -> pd.DataFrame:
        month = frame["scheduled_departure"].dt.month
        return frame.assign(prediction=rng.random(len(frame)), month_level=pd.Categorical(month))

    return with_extras(split.train), with_extras(split.test), numeric, categorical


def _tricky(live: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Levels never seen in training, missing values, categories that no row has, infinities and a column with
    no values at all."""
    out = live.copy()
    every = out.index[::7]
    for name in categorical:
        position = np.arange(len(out))
        column = out[name].cat.add_categories(["ZZ never in training", "unused"])
        out[name] = column.mask(position % 13 == 0, "ZZ never in training").mask(position % 11 == 0)
    out.loc[every, "temp"] = np.nan
    out.loc[out.index[::17], "distance"] = np.inf
    out.loc[out.index[::19], "dewp"] = -np.inf
    return out.assign(precip=np.nan)


def test_drift_equals_a_plain_computation_on_real_flights_for_every_input_type(flights):
    """Categoricals (counted by codes), object and string text (hashed), numeric values (hashed when they repeat,
    placed by binary search when not): every figure is the one of the plain computation, exactly."""
    train, test, numeric, categorical = flights
    profile = reference_profile(train, numeric, categorical)
    assert set(profile["categorical"]["month_level"]["proportions"]) == {"5", "6"}
    for live in (test, _tricky(test, categorical)):
        assert all(isinstance(live[name].dtype, pd.CategoricalDtype) for name in categorical)
        tables = [
            _assert_same_figures(live, profile),
            _assert_same_figures(live.astype(dict.fromkeys(categorical, object)), profile),
            _assert_same_figures(live.astype(dict.fromkeys(categorical, "string")), profile),
        ]
        for table in tables[1:]:
            pd.testing.assert_frame_equal(table, tables[0], check_exact=True)
    tricky = tables[0]
    assert tricky.loc["carrier", "unseen_rate"] > 0.05 and tricky.loc["carrier", "missing_rate"] > 0.05
    assert tricky.loc["precip", "status"] == "no data" and tricky.loc["temp", "missing_rate"] > 0.1
    assert np.isfinite(tricky.loc["distance", "psi"]) and np.isfinite(tricky.loc["prediction", "ks"])


def test_levels_named_alike_are_one_level_and_numeric_levels_are_named_as_text(flights):
    """A Categorical's categories 5 and "5" are both the level "5"; float categories are "5.0", not "5"; integer
    and float columns as categorical features are named as their text."""
    train, test, numeric, categorical = flights
    month = test["scheduled_departure"].dt.month
    profile = reference_profile(
        train.assign(month_int=train["month_level"].astype(int)), numeric, [*categorical, "month_int"]
    )
    mixed = pd.Categorical(
        [m if i % 2 else str(m) for i, m in enumerate(month)], categories=[5, "5", 6, "6", 7, "never"]
    )
    variants = {
        "mixed": test.assign(month_level=mixed, month_int=month),
        "floats": test.assign(month_level=pd.Categorical(month.astype(float)), month_int=month.astype(float)),
        "object": test.assign(month_level=month.astype(object), month_int=month.astype("Int64")),
    }
    tables = {kind: _assert_same_figures(live, profile) for kind, live in variants.items()}
    assert tables["mixed"].loc["month_level", "unseen_rate"] == 0
    assert (
        tables["floats"].loc["month_level", "unseen_rate"] == 1
        and tables["floats"].loc["month_int", "unseen_rate"] == 1
    )
    assert tables["object"].loc["month_int", "unseen_rate"] == 0


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")  # quantiles of inf
def test_infinite_training_values_give_the_same_figures(flights):
    """A feature with infinities in training has infinite (and NaN) cut points; it is counted the direct way."""
    train, test, numeric, categorical = flights
    train = train.copy()
    train.loc[train.index[::40], "distance"] = np.inf
    train.loc[train.index[::30], "temp"] = -np.inf
    profile = reference_profile(train, numeric, categorical)
    assert not np.isfinite(profile["numeric"]["distance"]["grid"]).all()
    assert not np.isfinite(profile["numeric"]["temp"]["grid"]).all()
    table = _assert_same_figures(_tricky(test, categorical), profile)
    assert table.loc["distance", "psi"] > 0


def test_the_chi_square_p_value_is_scipys():
    from scipy.stats import chi2

    from ml_platform.core.drift import chdtrc

    for statistic in (0.0, 0.5, 3.0, 40.0, 1e4, np.inf):
        for levels in (1, 2, 15, 93):
            assert chdtrc(levels, statistic) == chi2.sf(statistic, levels)
