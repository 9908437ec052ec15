"""The `files` source on real files: per-day templates, single files and globs, fsspec URLs, clear errors."""

from __future__ import annotations

from datetime import datetime

import fsspec
import pandas as pd
import pytest

from ml_platform.core.sources import SourceError, open_source
from ml_platform.spec import ModelSpec


def _spec(path: str, **source) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "events",
            "description": "d",
            "owner": "me@example.com",
            "task": "binary",
            "source": {"kind": "files", "path": path, **source},
            "timestamp": "ts",
            "partitions": {"start": "2024-01-01"},
            "target": {"expression": "y > 0"},
            "features": {"numeric": ["x"], "categorical": ["c"]},
        }
    )


def _day(day: str, n: int = 4) -> pd.DataFrame:
    stamps = pd.date_range(f"{day} 01:00", periods=n, freq="5h")
    return pd.DataFrame({"ts": stamps, "x": range(n), "c": ["a", "b"] * (n // 2), "y": [0, 1] * (n // 2)})


def test_one_csv_per_day(tmp_path):
    for day in ("2024-01-01", "2024-01-02"):
        _day(day).to_csv(tmp_path / f"{day}.csv", index=False)
    source = open_source(_spec(str(tmp_path / "{date}.csv")), tmp_path)
    one = source.load(datetime(2024, 1, 2), datetime(2024, 1, 3))
    assert len(one) == 4 and (one["ts"].dt.date.astype(str) == "2024-01-02").all()
    assert pd.api.types.is_datetime64_any_dtype(one["ts"])
    assert len(source.load(datetime(2024, 1, 1), datetime(2024, 1, 3))) == 8


def test_one_parquet_per_day(tmp_path):
    _day("2024-01-05").to_parquet(tmp_path / "2024-01-05.parquet")
    source = open_source(_spec(str(tmp_path / "{date}.parquet")), tmp_path)
    assert source.load(datetime(2024, 1, 5), datetime(2024, 1, 6))["x"].tolist() == [0, 1, 2, 3]


def test_single_file_and_glob_are_filtered_on_the_timestamp(tmp_path):
    pd.concat([_day("2024-01-01"), _day("2024-01-02")]).to_csv(tmp_path / "all.csv", index=False)
    single = open_source(_spec(str(tmp_path / "all.csv")), tmp_path).load(datetime(2024, 1, 2), datetime(2024, 1, 3))
    assert len(single) == 4 and (single["ts"] >= "2024-01-02").all()
    folder = tmp_path / "parts"
    folder.mkdir()
    _day("2024-01-01").to_csv(folder / "part-a.csv", index=False)
    _day("2024-01-02").to_csv(folder / "part-b.csv", index=False)
    glob = open_source(_spec(str(folder / "*.csv")), tmp_path).load(datetime(2024, 1, 1, 6), datetime(2024, 1, 2))
    assert glob["ts"].tolist() == [
        pd.Timestamp("2024-01-01 06:00"),
        pd.Timestamp("2024-01-01 11:00"),
        pd.Timestamp("2024-01-01 16:00"),
    ]


def test_fsspec_urls(tmp_path):
    _day("2024-01-03").to_csv(tmp_path / "2024-01-03.csv", index=False)
    local = open_source(_spec(f"file://{tmp_path}/{{date}}.csv"), tmp_path)
    assert len(local.load(datetime(2024, 1, 3), datetime(2024, 1, 4))) == 4
    with fsspec.open("memory://landing/2024-01-04.parquet", "wb") as handle:
        _day("2024-01-04").to_parquet(handle)
    memory = open_source(_spec("memory://landing/{date}.parquet"), tmp_path)
    assert len(memory.load(datetime(2024, 1, 4), datetime(2024, 1, 5))) == 4
    with fsspec.open("memory://glob/a.csv", "wt") as handle:
        _day("2024-01-04").to_csv(handle, index=False)
    assert (
        len(open_source(_spec("memory://glob/*.csv"), tmp_path).load(datetime(2024, 1, 4), datetime(2024, 1, 5))) == 4
    )


def test_a_missing_day_names_the_file(tmp_path):
    source = open_source(_spec(str(tmp_path / "{date}.csv")), tmp_path)
    with pytest.raises(SourceError, match=r"not found: .*2024-01-09\.csv"):
        source.load(datetime(2024, 1, 9), datetime(2024, 1, 10))
    with pytest.raises(SourceError, match="no file matches"):
        open_source(_spec(str(tmp_path / "none-*.csv")), tmp_path).load(datetime(2024, 1, 9), datetime(2024, 1, 10))


def test_a_file_without_the_timestamp_column(tmp_path):
    _day("2024-01-01").rename(columns={"ts": "when"}).to_csv(tmp_path / "2024-01-01.csv", index=False)
    with pytest.raises(SourceError, match="timestamp column 'ts'"):
        open_source(_spec(str(tmp_path / "{date}.csv")), tmp_path).load(datetime(2024, 1, 1), datetime(2024, 1, 2))


def test_an_unreadable_file_names_it(tmp_path):
    (tmp_path / "2024-01-01.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match=r"cannot read .*2024-01-01\.parquet as parquet"):
        open_source(_spec(str(tmp_path / "{date}.parquet")), tmp_path).load(datetime(2024, 1, 1), datetime(2024, 1, 2))


def test_timezone_aware_timestamps_become_naive_utc(tmp_path):
    frame = _day("2024-01-01").assign(ts=lambda f: f["ts"].dt.tz_localize("America/New_York"))
    frame.to_parquet(tmp_path / "all.parquet")
    loaded = open_source(_spec(str(tmp_path / "all.parquet")), tmp_path).load(
        datetime(2024, 1, 1), datetime(2024, 1, 3)
    )
    assert loaded["ts"].dt.tz is None
    assert loaded["ts"].iloc[0] == pd.Timestamp("2024-01-01 06:00")  # 01:00 in New York is 06:00 UTC
