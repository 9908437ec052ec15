"""Features and target from raw rows: derived features, counted drops, and a clear error for missing columns."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from ml_platform.core import derived
from ml_platform.core.features import FeatureError, build_features, feature_columns
from ml_platform.core.sources import nycflights13


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
    assert frame["carrier"].map(type).eq(str).all()
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


def test_a_feature_missing_from_the_data_names_the_spec_field(real_day, flight_spec):
    with pytest.raises(FeatureError) as caught:
        build_features(real_day.drop(columns=["temp"]), flight_spec)
    message = str(caught.value)
    assert "features.numeric[2]: 'temp'" in message and "flight_delay.yaml" in message


def test_regression_target_drops_unknown(real_day, flight_spec):
    spec = flight_spec.model_copy(update={"task": "regression",
                                          "target": flight_spec.target.model_copy(
                                              update={"name": "arr_delay_min", "expression": None,
                                                      "column": "arr_delay"})})
    frame, report = build_features(real_day, spec)
    assert frame["arr_delay_min"].notna().all()
    assert report.dropped_no_target == real_day["arr_delay"].isna().sum()
