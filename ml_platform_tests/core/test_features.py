"""Features and target from raw rows: derived features, counted drops, and a clear error for missing columns."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from ml_platform.core import derived
from ml_platform.core.features import FeatureError, as_category, build_features, concat_partitions, feature_columns
from ml_platform.core.sources import nycflights13
from ml_platform_tests.core.text_classifier import with_target


@pytest.fixture(scope="module")
def real_day() -> pd.DataFrame:
    return nycflights13.load(nycflights13.Replay(offset_days=0), datetime(2013, 3, 4), datetime(2013, 3, 5))


def test_features_of_a_real_day(real_day, flight_spec):
    frame, report = build_features(real_day, flight_spec)
    assert list(frame.columns) == feature_columns(flight_spec)
    unknown = real_day["arr_delay"].isna().sum()
    assert unknown > 0, "this day should contain cancelled flights"
    assert report.dropped_no_target == unknown
    assert report.rows_out == len(frame) == len(real_day) - unknown
    expected = (real_day["arr_delay"].dropna() > 15).astype("int64").to_numpy()
    assert (frame["delayed"].to_numpy() == expected).all()
    assert set(frame["day_of_week"]) == {0.0}  # 2013-03-04 was a Monday
    for name in flight_spec.features.all_categorical:
        assert isinstance(frame[name].dtype, pd.CategoricalDtype), name
        assert all(type(level) is str for level in frame[name].cat.categories), name
    assert frame["distance"].dtype == "float64"


def test_derived_features():
    frame = pd.DataFrame({"t": pd.to_datetime(["2013-03-04 05:30", "2013-12-29 23:00"])})
    assert derived.hour_of_day(frame, "t").tolist() == [5, 23]
    assert derived.day_of_week(frame, "t").tolist() == [0, 6]
    assert derived.month(frame, "t").tolist() == [3, 12]


def test_missing_categories_stay_missing(real_day, flight_spec):
    frame, _ = build_features(real_day, flight_spec)
    assert frame["plane_manufacturer"].isna().any()
    assert not (frame["plane_manufacturer"] == "nan").any()
    assert "nan" not in frame["plane_manufacturer"].cat.categories


def _as_text_before(values: pd.Series) -> pd.Series:
    """How categorical features were built before they became Categoricals: object text, missing stays NaN."""
    text = values.astype("object")
    mask = text.notna()
    text = text.where(~mask, text[mask].astype(str)) if mask.any() else text
    return text.where(mask, np.nan).astype("object")


def test_categorical_features_hold_the_same_values_as_the_text_they_replace(real_day, flight_spec):
    frame, _ = build_features(real_day, flight_spec)
    known = real_day["arr_delay"].notna().to_numpy()
    for name in flight_spec.features.all_categorical:
        before = _as_text_before(real_day[name])[known].reset_index(drop=True)
        pd.testing.assert_series_equal(frame[name].astype(object), before, check_names=False)
        assert list(frame[name].cat.categories) == sorted(before.dropna().unique()), name  # no unused levels


def test_as_category_turns_any_value_into_text_and_keeps_missing_missing():
    values = pd.Series(["b", 1, None, "1", np.nan, 2.5, True, pd.NA], index=range(10, 18), dtype=object)
    category = as_category(values)
    assert category.index.equals(values.index)
    assert list(category.cat.categories) == ["1", "2.5", "True", "b"]  # 1 and "1" are one level
    assert category.astype(object).tolist()[:2] == ["b", "1"]
    pd.testing.assert_series_equal(category.astype(object), _as_text_before(values))
    assert as_category(pd.Series([None, np.nan], dtype=object)).isna().all()
    assert len(as_category(pd.Series([], dtype=object))) == 0


def test_concat_partitions_unions_the_levels_of_each_day(real_day, flight_spec):
    half = len(real_day) // 2  # two "partitions", each with the levels of its own rows
    days = [build_features(real_day.iloc[:half], flight_spec)[0], build_features(real_day.iloc[half:], flight_spec)[0]]
    assert not days[0]["dest"].cat.categories.equals(days[1]["dest"].cat.categories)
    joined = concat_partitions(days)
    assert isinstance(joined["dest"].dtype, pd.CategoricalDtype)
    assert list(joined["dest"].cat.categories) == sorted(set(days[0]["dest"].dropna()) | set(days[1]["dest"].dropna()))
    pd.testing.assert_frame_equal(
        joined.astype(dict.fromkeys(flight_spec.features.all_categorical, object)),
        pd.concat(days, ignore_index=True).astype(dict.fromkeys(flight_spec.features.all_categorical, object)),
    )
    assert not isinstance(pd.concat(days)["dest"].dtype, pd.CategoricalDtype)  # what plain concat would do


def test_a_feature_missing_from_the_data_names_the_spec_field(real_day, flight_spec):
    with pytest.raises(FeatureError) as caught:
        build_features(real_day.drop(columns=["temp"]), flight_spec)
    message = str(caught.value)
    assert "features.numeric[2]: 'temp'" in message and "flight_delay.yaml" in message


def test_regression_target_drops_unknown(real_day, flight_spec):
    spec = flight_spec.model_copy(
        update={
            "task": "regression",
            "target": flight_spec.target.model_copy(
                update={"name": "arr_delay_min", "expression": None, "column": "arr_delay"}
            ),
        }
    )
    frame, report = build_features(real_day, spec)
    assert frame["arr_delay_min"].notna().all()
    assert report.dropped_no_target == real_day["arr_delay"].isna().sum()


def test_a_days_content_hash_is_the_same_stored_alone_or_inside_the_joined_window(real_day, flight_spec):
    """Data versions hash values, not level sets: a day's hash as its own partition equals the hash of its rows
    in the joined window (whose levels are the union of every day's), so versions stay comparable."""
    from ml_platform.core.data_versions import content_hash, versions_by_day

    half = len(real_day) // 2
    days = [build_features(real_day.iloc[:half], flight_spec)[0], build_features(real_day.iloc[half:], flight_spec)[0]]
    joined = concat_partitions(days)
    assert not joined["dest"].cat.categories.equals(days[0]["dest"].cat.categories)
    assert content_hash(joined.iloc[: len(days[0])].reset_index(drop=True)) == content_hash(days[0])
    assert content_hash(joined.iloc[len(days[0]) :].reset_index(drop=True)) == content_hash(days[1])
    (version,) = versions_by_day(joined, flight_spec.timestamp).values()  # one calendar day
    assert version == content_hash(joined)


def test_a_multiclass_text_target_keeps_its_labels_as_text(real_day, flight_spec):
    spec = with_target(flight_spec, "multiclass", name="airport", column="origin")
    frame, report = build_features(real_day, spec)
    assert frame["airport"].dtype == object and set(frame["airport"]) == {"EWR", "JFK", "LGA"}
    assert report.rows_out == len(real_day) and report.dropped_no_target == 0


def test_a_boolean_target_for_multiclass_is_refused_with_the_count_hint(real_day, flight_spec):
    spec = with_target(flight_spec, "multiclass", name="lateness", expression="(arr_delay > 15) + (arr_delay > 60)")
    with pytest.raises(FeatureError, match=r"target\.expression: .*booleans.*\* 1"):
        build_features(real_day, spec)
    counted = with_target(
        flight_spec, "multiclass", name="lateness", expression="(arr_delay > 15) * 1 + (arr_delay > 60) * 1"
    )
    assert set(build_features(real_day, counted)[0]["lateness"]) == {0, 1, 2}


def _yes_no(raw: pd.DataFrame) -> pd.DataFrame:
    late = raw["arr_delay"] > 15
    return raw.assign(outcome=np.where(raw["arr_delay"].isna(), None, np.where(late, "yes", "no")))


def test_a_binary_text_target_needs_its_positive_class(real_day, flight_spec):
    raw = _yes_no(real_day)
    with pytest.raises(FeatureError, match=r"target\.positive: required when the target is text"):
        build_features(raw, with_target(flight_spec, "binary", name="outcome", column="outcome"))
    with pytest.raises(FeatureError, match=r"target\.positive: .*quote it"):
        build_features(raw, with_target(flight_spec, "binary", name="outcome", column="outcome", positive=True))
    with pytest.raises(FeatureError, match=r"target\.positive: 'late' is not a value"):
        build_features(raw, with_target(flight_spec, "binary", name="outcome", column="outcome", positive="late"))
    frame, report = build_features(
        raw, with_target(flight_spec, "binary", name="outcome", column="outcome", positive="yes")
    )
    assert set(frame["outcome"]) == {"yes", "no"} and report.dropped_no_target == raw["arr_delay"].isna().sum()
    assert ((frame["outcome"] == "yes") == (raw["arr_delay"].dropna() > 15).to_numpy()).all()


def test_a_binary_target_with_three_values_names_task(real_day, flight_spec):
    spec = with_target(flight_spec, "binary", name="airport", column="origin", positive="JFK")
    with pytest.raises(FeatureError, match=r"task: 'binary' but target\.column 'airport' has 3 values"):
        build_features(real_day, spec)
    numeric = with_target(
        flight_spec, "binary", name="thirds", expression="(arr_delay > 15) * 0.5 + (arr_delay > 60) * 0.5"
    )
    with pytest.raises(FeatureError, match=r"task: 'binary' .* 3 values"):
        build_features(real_day, numeric)
