"""The scale dataset generator (benchmarks/scale_data.py) at a small size: its spec passes the platform's
checks, its files are what the platform's nycflights13 source gives, multiplied with noise, reproducibly,
and the data layer materializes a day of it."""

from __future__ import annotations

import importlib.util
import io
import math
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.cli import check
from ml_platform.core.sources import nycflights13
from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec

ROWS, WINDOW = 60_000, 21
DAY = date(2013, 1, 10)


def _module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_data.py"
    spec = importlib.util.spec_from_file_location("scale_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scale_data = _module()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    return scale_data.run(tmp_path_factory.mktemp("scale"), ROWS, window_days=WINDOW)


def _real(day: date) -> pd.DataFrame:
    start = datetime.combine(day, datetime.min.time())
    return nycflights13.load(nycflights13.Replay(0), start, start + timedelta(days=1))


def _read(dataset: dict, day: date) -> pd.DataFrame:
    return pd.read_parquet(Path(dataset["spec"]).parent / "raw" / f"{day.isoformat()}.parquet")


def test_the_spec_passes_the_platforms_checks(dataset):
    spec = load_spec(dataset["spec"])
    assert check(dataset["spec"]) == 0
    assert spec.name == "flight_delay_scale" and spec.source.kind == "files"
    assert spec.partitions.start == date(2013, 1, 1) and spec.partitions.end == date(2013, 1, 29)
    assert spec.partitions.freshness is None and spec.monitoring.model_freshness is None
    training = spec.training
    assert (training.engine, training.window_days, training.num_boost_round, training.early_stopping_rounds) == (
        "local",
        WINDOW,
        300,
        50,
    )
    assert spec.gates.fairness is None and spec.gates.min == 0.5 and spec.gates.max_regression == 1.0
    assert spec.features == load_spec(scale_data.BUNDLED_SPECS / "flight_delay.yaml").features
    # weekly retraining starts on day 15 (2013-01-15); its newest partition trains on 01-08 … 01-28
    assert dataset["retraining_partition"] == "2013-01-22"


def test_one_file_per_day_with_k_replicas_of_each_flight(dataset):
    files = sorted(p.name for p in (Path(dataset["spec"]).parent / "raw").iterdir())
    assert files == [f"{date(2013, 1, 1) + timedelta(days=i)}.parquet" for i in range(WINDOW + 7)]
    real_window = sum(len(_real(date(2013, 1, 8) + timedelta(days=i))) for i in range(WINDOW))
    k = dataset["replicas"]
    assert k == math.ceil(ROWS / real_window) and dataset["rows_per_window"] == k * real_window
    frame, real = _read(dataset, DAY), _real(DAY)
    assert len(frame) == k * len(real) and frame["flight_id"].is_unique
    assert frame["flight_id"].str.replace(r"-r\d+$", "", regex=True).value_counts().eq(k).all()
    originals = (
        frame[frame["flight_id"].isin(real["flight_id"])]
        .sort_values(["scheduled_departure", "carrier", "flight"], kind="stable")
        .reset_index(drop=True)
    )
    # replica 0 is the real row, as Parquet stores it (a missing string reads back as None, not NaN)
    pd.testing.assert_frame_equal(originals, pd.read_parquet(io.BytesIO(real.to_parquet(index=False))))


def test_replicas_are_noisy_but_valid(dataset):
    frame, spec = _read(dataset, DAY), load_spec(dataset["spec"])
    base = frame["flight_id"].str.replace(r"-r\d+$", "", regex=True)
    real = _real(DAY).set_index("flight_id").loc[base]
    assert (frame["origin"].to_numpy() == real["origin"].to_numpy()).all()
    assert frame["carrier"].isin(spec.expectations.columns["carrier"].allowed).all()
    swapped = (frame["dest"].to_numpy() != real["dest"].to_numpy()).mean()
    assert 0.02 < swapped < 0.08
    hhmm = frame["sched_dep_time"]
    assert hhmm.between(0, 2359).all() and (hhmm % 100 < 60).all()
    minutes = (frame["scheduled_departure"] - pd.Timestamp(DAY)).dt.total_seconds() / 60
    assert (minutes == hhmm // 100 * 60 + hhmm % 100).all()  # same day, same clock time
    late, real_late = frame["arr_delay"] > 15, real["arr_delay"].to_numpy() > 15
    assert 0.9 < (late.to_numpy() == real_late).mean() < 1.0
    assert (frame["temp"].to_numpy() != real["temp"].to_numpy()).mean() > 0.5
    assert (frame["precip"].eq(0).to_numpy() == (real["precip"].to_numpy() == 0)).all()


def test_a_fixed_seed_gives_the_same_files(dataset, tmp_path):
    again = scale_data.run(tmp_path / "again", ROWS, window_days=WINDOW)
    other = scale_data.run(tmp_path / "other", ROWS, window_days=WINDOW, seed=1)
    first, second, third = (Path(run["spec"]).parent / "raw" for run in (dataset, again, other))
    for name in ("2013-01-01.parquet", "2013-01-28.parquet"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (third / name).read_bytes()


def test_the_data_layer_materializes_a_day(dataset, home, instance):
    defs = build_definitions([load_spec(dataset["spec"])])
    partition = DAY.isoformat()
    result = defs.resolve_job_def("flight_delay_scale_data").execute_in_process(
        instance=instance, partition_key=partition
    )
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    features = pd.read_parquet(home / "storage" / "flight_delay_scale" / "features" / f"{partition}.parquet")
    raw = _read(dataset, DAY)
    assert len(features) == raw["arr_delay"].notna().sum()
