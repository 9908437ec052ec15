"""The Pandera schema from the spec: real days pass; nulls, ranges, unknown categories and short days fail."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from ml_platform.core.schema import build_schema, validate
from ml_platform.core.sources import nycflights13
from ml_platform.spec import Expectations


@pytest.fixture(scope="module")
def real_day() -> pd.DataFrame:
    replay = nycflights13.Replay(offset_days=0)
    return nycflights13.load(replay, datetime(2013, 6, 12), datetime(2013, 6, 13))


def test_schema_is_a_pandera_schema(flight_spec):
    schema = build_schema(flight_spec.expectations)
    assert isinstance(schema, pa.DataFrameSchema)
    assert set(schema.columns) == set(flight_spec.expectations.columns)
    assert schema.columns["flight_id"].unique


def test_a_real_day_passes(real_day, flight_spec):
    report = validate(real_day, flight_spec.expectations)
    assert report.passed, report.table()
    assert report.rows == len(real_day) > 500


def test_injected_faults_are_each_named_and_counted(real_day, flight_spec):
    bad = real_day.copy()
    bad.loc[bad.index[:4], "origin"] = None  # nulls where not allowed
    bad.loc[bad.index[10:12], "temp"] = 500.0  # out of range
    bad.loc[bad.index[20:23], "carrier"] = "ZZ"  # unknown category
    bad.loc[bad.index[30], "flight_id"] = bad.loc[bad.index[31], "flight_id"]  # duplicate key
    report = validate(bad, flight_spec.expectations)
    assert not report.passed
    found = {(f.column, f.expectation): f.count for f in report.failures}
    assert found[("origin", "no nulls")] == 4
    assert found[("temp", "less_than_or_equal_to(130.0)")] == 2
    assert found[("carrier", next(e for c, e in found if c == "carrier"))] == 3
    assert found[("flight_id", "unique values")] == 2
    carrier = next(f for f in report.failures if f.column == "carrier")
    assert "isin" in carrier.expectation
    assert [s["carrier"] for s in carrier.samples] == ["ZZ", "ZZ", "ZZ"]
    table = report.table()
    assert list(table.columns) == ["column", "expectation", "failures", "partitions", "sample values"]
    assert set(table["column"]) == {"origin", "temp", "carrier", "flight_id"}


def test_failures_are_attributed_to_partitions(real_day, flight_spec):
    bad = real_day.copy()
    partition_of = pd.Series(np.where(bad.index < 300, "day-a", "day-b"), index=bad.index)
    bad.loc[bad.index[400], "distance"] = -5.0
    expectations = flight_spec.expectations.model_copy(update={"min_rows": 1})
    report = validate(bad, expectations, partition_of)
    (failure,) = report.failures
    assert failure.column == "distance" and failure.partitions == ["day-b"]


def test_wrong_dtype_and_missing_column(real_day, flight_spec):
    bad = real_day.drop(columns=["dest"]).assign(sched_dep_time=real_day["sched_dep_time"].astype(str))
    report = validate(bad, flight_spec.expectations)
    found = {(f.column, f.expectation) for f in report.failures}
    assert ("dest", "column is present") in found
    assert ("sched_dep_time", "dtype int (found object)") in found


def test_minimum_rows_per_partition_names_short_and_empty_partitions(real_day):
    expectations = Expectations(min_rows=100)
    partition_of = pd.Series("day-a", index=real_day.index)
    partition_of.iloc[:50] = "day-b"
    report = validate(real_day, expectations, partition_of, ["day-a", "day-b", "day-c"])
    (failure,) = report.failures
    assert failure.column == "(rows)"
    assert failure.partitions == ["day-b", "day-c"]
    assert failure.count == 2
    assert "day-b: 50 rows" in str(failure.samples)


def test_categorical_columns_validate_like_text(real_day, flight_spec):
    """A source may hand over pandas Categoricals (a Parquet file written from categories): dtype `str`, allowed
    values, nulls and uniqueness judge them exactly as the same values in object text."""
    bad = real_day.copy()
    bad.loc[bad.index[:4], "origin"] = None
    bad.loc[bad.index[20:23], "carrier"] = "ZZ"
    as_text = validate(bad, flight_spec.expectations)
    categorical = bad.astype({"origin": "category", "carrier": "category", "dest": "category"})
    as_categories = validate(categorical, flight_spec.expectations)
    assert validate(real_day.astype({"carrier": "category", "origin": "category"}), flight_spec.expectations).passed
    summary = lambda report: sorted((f.column, f.expectation, f.count, str(f.samples)) for f in report.failures)
    assert summary(as_categories) == summary(as_text)
    assert {f.column for f in as_categories.failures} == {"origin", "carrier"}
