"""Integration: real nycflights13 days materialized through `features` in a real temporary Dagster instance.

Bad data is real data with injected faults, written as the `files` source would find it.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_platform.core.data_versions import content_hash
from ml_platform.core.features import build_features
from ml_platform.core.sources import nycflights13
from ml_platform.defs import build_definitions
from ml_platform.defs.data_assets import SCHEMA_CHECK
from ml_platform.spec import load_spec

OFFSET_WEEKS = 600
RAW = dg.AssetKey(["flight_delay", "raw"])
FEATURES = dg.AssetKey(["flight_delay", "features"])


def _day(source_day: date) -> str:
    return (source_day + timedelta(weeks=OFFSET_WEEKS)).isoformat()


def _run(defs: dg.Definitions, instance, partition: str | None = None, last: str | None = None):
    job = defs.resolve_job_def("flight_delay_data")
    tags = {"dagster/asset_partition_range_start": partition, "dagster/asset_partition_range_end": last} if last else {}
    return job.execute_in_process(
        instance=instance, partition_key=None if last else partition, tags=tags, raise_on_error=False
    )


def _failure_message(result) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)


def _stored(home: Path, key: dg.AssetKey) -> list[str]:
    folder = home.joinpath("storage", *key.path)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def flight_defs(home, tmp_path, write_spec):
    spec = load_spec(write_spec(tmp_path / "specs", {"source.offset_weeks": OFFSET_WEEKS}))
    return build_definitions([spec])


def _files_spec(tmp_path: Path, write_spec, days: dict[str, pd.DataFrame], fmt: str = "csv"):
    folder = tmp_path / "landing"
    folder.mkdir(exist_ok=True)
    for key, frame in days.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{key}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{key}.parquet", index=False)
    path = write_spec(
        tmp_path / "specs",
        {
            "source": {"kind": "files", "path": str(folder / ("{date}." + fmt))},
            "partitions.start": _day(date(2013, 1, 1)),
        },
    )
    return load_spec(path)


def _real_day(source_day: date) -> pd.DataFrame:
    start = datetime.combine(source_day + timedelta(weeks=OFFSET_WEEKS), datetime.min.time())
    return nycflights13.load(nycflights13.Replay(7 * OFFSET_WEEKS), start, start + timedelta(days=1))


def test_definitions_declare_the_lineage_graph(flight_defs, home):
    graph = flight_defs.resolve_asset_graph()
    raw = graph.get(RAW)
    features = graph.get(FEATURES)
    assert features.parent_keys == {RAW}
    assert raw.group_name == features.group_name == "flight_delay"
    assert raw.owners == ["ml-platform@example.com"]
    assert {"parquet", "pandas"} <= set(raw.kinds)
    assert raw.legacy_freshness_policy is None
    policy = raw.freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == timedelta(hours=50)
    assert raw.backfill_policy == dg.BackfillPolicy.single_run()
    partitions = raw.partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.get_first_partition_key() == _day(date(2013, 1, 1))
    (check_key,) = graph.get_check_keys_for_assets({RAW})
    assert check_key.name == SCHEMA_CHECK
    assert flight_defs.resolve_assets_def(RAW).get_spec_for_check_key(check_key).blocking
    assert raw.code_version == features.code_version


def test_a_real_day_through_features(flight_defs, instance, home):
    partition = _day(date(2013, 6, 12))
    result = _run(flight_defs, instance, partition)
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.partition == partition
    raw_event = instance.get_latest_materialization_event(RAW).asset_materialization
    assert raw_event.partition == partition
    stored = pd.read_parquet(home / "storage" / "flight_delay" / "raw" / f"{partition}.parquet")
    assert len(stored) == raw_event.metadata["rows"].value > 600
    assert raw_event.tags["dagster/data_version"] == content_hash(stored)
    assert raw_event.metadata["source"].value["offset_weeks"] == OFFSET_WEEKS
    assert raw_event.metadata["source"].value["pinned_on"] == "spec"
    assert partition in raw_event.metadata["time_range"].value
    assert "flight_id" in raw_event.metadata["preview"].value
    assert {c.name for c in raw_event.metadata["schema"].value.columns} >= {"carrier", "temp", "arr_delay"}
    features_event = instance.get_latest_materialization_event(FEATURES).asset_materialization
    features = pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{partition}.parquet")
    dropped = features_event.metadata["rows_dropped_no_target"].value
    assert len(features) + dropped == len(stored)
    assert dropped == stored["arr_delay"].isna().sum()
    assert 0.05 < features_event.metadata["positive_rate"].value < 0.6
    assert (pd.to_datetime(features["scheduled_departure"]).dt.date.astype(str) == partition).all()


def test_a_week_backfills_in_one_run(flight_defs, instance, home, flight_spec):
    first, last = _day(date(2013, 3, 4)), _day(date(2013, 3, 10))
    result = _run(flight_defs, instance, first, last)
    assert result.success
    raw_events = [e for e in result.get_asset_materialization_events() if e.asset_key == RAW]
    assert sorted(e.partition for e in raw_events) == [_day(date(2013, 3, 4) + timedelta(days=i)) for i in range(7)]
    assert len(_stored(home, FEATURES)) == 7
    for event in raw_events:  # each partition carries its own row count and content hash
        metadata = event.step_materialization_data.materialization.metadata
        stored = pd.read_parquet(home / "storage" / "flight_delay" / "raw" / f"{event.partition}.parquet")
        assert metadata["content_hash"].value == content_hash(stored)
        assert metadata["rows"].value == len(stored)
        # the range's own metadata (schema, preview, phases) sits on the newest day only
        assert ("preview" in metadata) == (event.partition == last)
    newest = max(raw_events, key=lambda e: e.partition).step_materialization_data.materialization.metadata
    assert newest["time_range"].value.startswith(first) and newest["partitions"].value == 7
    assert {"source_read", "validation", "split_and_versions"} <= set(newest["phase_seconds"].value)
    assert len(instance.get_runs()) == 1
    features_events = {
        e.partition: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == FEATURES
    }
    levels = set()
    for partition, metadata in features_events.items():
        # each day is stored with its own levels, as if it had been materialized alone
        stored = pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{partition}.parquet")
        raw = pd.read_parquet(home / "storage" / "flight_delay" / "raw" / f"{partition}.parquet")
        alone = build_features(raw, flight_spec)[0]
        pd.testing.assert_frame_equal(stored, alone, check_exact=True)
        assert isinstance(stored["dest"].dtype, pd.CategoricalDtype)
        assert metadata["content_hash"].value == content_hash(stored)
        levels.add(tuple(stored["dest"].cat.categories))
    assert len(levels) > 1  # the days differ in their destinations
    assert "features" in features_events[last]["phase_seconds"].value
    assert set(features_events[last]["write_seconds"].value) == {"s", "cpu_s"}


def test_features_read_only_their_own_partition(flight_defs, instance, home):
    first, last = _day(date(2013, 5, 1)), _day(date(2013, 5, 3))
    assert _run(flight_defs, instance, first, last).success
    (home / "storage" / "flight_delay" / "raw" / f"{first}.parquet").write_bytes(b"garbage")
    job = flight_defs.resolve_job_def("flight_delay_data")
    result = job.execute_in_process(instance=instance, partition_key=_day(date(2013, 5, 2)), asset_selection=[FEATURES])
    assert result.success


def test_bad_rows_are_shown_and_block_features(tmp_path, home, instance, write_spec):
    day = date(2013, 7, 1)
    bad = _real_day(day)
    bad.loc[bad.index[:4], "origin"] = None
    bad.loc[bad.index[10:12], "temp"] = 500.0
    bad.loc[bad.index[20:23], "carrier"] = "ZZ"
    spec = _files_spec(tmp_path, write_spec, {_day(day): bad})
    defs = build_definitions([spec])
    result = _run(defs, instance, _day(day))
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.blocking
    assert evaluation.partition == _day(day)
    rows = {(r.data["column"], r.data["failures"]) for r in evaluation.metadata["failures"].value.records}
    assert {("origin", 4), ("temp", 2), ("carrier", 3)} <= rows
    assert evaluation.metadata["failing_rows"].value == 9
    assert "ZZ" in str(evaluation.metadata["samples"].value)
    # raw is materialized with its failures; features never ran
    assert instance.get_latest_materialization_event(RAW) is not None
    assert instance.get_latest_materialization_event(FEATURES) is None
    assert _stored(home, FEATURES) == []
    assert not result.success and "blocking asset check failed" in _failure_message(result)
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert started == {"flight_delay__raw"}


def test_a_parquet_landing_zone_passes(tmp_path, home, instance, write_spec):
    days = {_day(date(2013, 2, d)): _real_day(date(2013, 2, d)) for d in (1, 2)}
    defs = build_definitions([_files_spec(tmp_path, write_spec, days, fmt="parquet")])
    result = _run(defs, instance, *days)
    assert result.success
    assert _stored(home, FEATURES) == [f"{k}.parquet" for k in days]


def test_an_empty_day_fails_naming_the_partition(tmp_path, home, instance, write_spec):
    day = date(2013, 8, 5)
    spec = _files_spec(tmp_path, write_spec, {_day(day): _real_day(day).iloc[0:0]})
    result = _run(build_definitions([spec]), instance, _day(day))
    assert not result.success
    message = _failure_message(result)
    assert _day(day) in message and "no rows" in message
    assert _stored(home, RAW) == []


def test_a_missing_source_file_fails_naming_partition_and_path(tmp_path, home, instance, write_spec):
    day, missing = date(2013, 8, 5), date(2013, 8, 6)
    spec = _files_spec(tmp_path, write_spec, {_day(day): _real_day(day)})
    result = _run(build_definitions([spec]), instance, _day(missing))
    assert not result.success
    message = _failure_message(result)
    assert f"partition {_day(missing)}" in message and f"{_day(missing)}.csv" in message and "not found" in message
    assert _stored(home, RAW) == []


def test_a_sql_error_fails_naming_the_partition(tmp_path, home, instance, write_spec):
    database = tmp_path / "flights.db"
    sqlite3.connect(database).close()
    spec = load_spec(
        write_spec(
            tmp_path / "specs",
            {
                "source": {
                    "kind": "sql",
                    "url": f"sqlite:///{database}",
                    "query": "SELECT * FROM flights WHERE scheduled_departure >= :start AND scheduled_departure < :end",
                },
                "partitions.start": "2026-01-01",
            },
        )
    )
    result = _run(build_definitions([spec]), instance, "2026-01-05")
    assert not result.success
    message = _failure_message(result)
    assert "partition 2026-01-05" in message and "no such table: flights" in message
    assert _stored(home, RAW) == []


def test_a_sql_source_through_features(tmp_path, home, instance, write_spec):
    day = date(2013, 9, 9)
    frame = _real_day(day)
    database = tmp_path / "flights.db"
    with sqlite3.connect(database) as connection:
        frame.assign(scheduled_departure=frame["scheduled_departure"].astype(str)).to_sql(
            "flights", connection, index=False
        )
    spec = load_spec(
        write_spec(
            tmp_path / "specs",
            {
                "source": {
                    "kind": "sql",
                    "url": f"sqlite:///{database}",
                    "query": "SELECT * FROM flights WHERE scheduled_departure >= :start AND scheduled_departure < :end",
                },
                "partitions.start": "2020-01-01",
            },
        )
    )
    result = _run(build_definitions([spec]), instance, _day(day))
    assert result.success, _failure_message(result)
    assert len(pd.read_parquet(home / "storage" / "flight_delay" / "raw" / f"{_day(day)}.parquet")) == len(frame)


def test_a_new_file_materializes_its_day(tmp_path, home, instance, write_spec):
    day = date(2013, 8, 12)
    _files_spec(tmp_path, write_spec, {_day(day): _real_day(day)})  # lands one day's file
    spec = load_spec(
        write_spec(
            tmp_path / "specs",
            {
                "source": {"kind": "files", "path": str(tmp_path / "landing" / "{date}.csv")},
                "partitions.start": _day(date(2013, 6, 1)),
                "partitions.end": _day(date(2013, 8, 20)),
            },
        )
    )  # room to train
    defs = build_definitions([spec])
    sensor = defs.resolve_sensor_def("new_data")
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    (request,) = result.run_requests
    assert request.partition_key == _day(day) and request.tags["ml_platform/reason"] == "new data"
    assert _run(defs, instance, _day(day)).success
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert again.run_requests == [] and "no new files" in again.skip_message
