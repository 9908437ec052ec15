"""What all sources share: configs that bind themselves, kinds read off one union, a typed replay, metadata."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pandas as pd

from ml_platform.core.sources import (
    SOURCE_KINDS,
    DataSource,
    FilesSource,
    Nycflights13Source,
    SqlSource,
    known_columns,
    nycflights13,
    open_source,
)


def test_the_kinds_come_from_the_union():
    assert {"nycflights13": Nycflights13Source, "files": FilesSource, "sql": SqlSource} == SOURCE_KINDS


def test_known_columns_only_without_reading_data():
    assert known_columns(Nycflights13Source(kind="nycflights13")) == nycflights13.COLUMNS
    assert known_columns(FilesSource(kind="files", path="/data/{date}.csv")) is None
    query = "SELECT * FROM t WHERE ts >= :start AND ts < :end"
    assert known_columns(SqlSource(kind="sql", url="sqlite://", query=query)) is None


def test_a_replay_is_typed_and_described(tmp_path, flight_spec):
    source = open_source(flight_spec, tmp_path)
    assert isinstance(source.replay, nycflights13.Replay)
    assert source.describe() == {"kind": "nycflights13", **source.replay.describe()}
    assert source.coverage_hint() == (f" (the replay covers {source.replay.first_day} to {source.replay.last_day})")


def test_other_sources_describe_where_their_data_is(tmp_path):
    files = FilesSource(kind="files", path="/data/{date}.csv").bind("m", "ts", tmp_path)
    assert files.replay is None and files.coverage_hint() == ""
    assert files.describe() == {"kind": "files", "path": "/data/{date}.csv"}
    query = "SELECT * FROM t WHERE ts >= :start AND ts < :end"
    sql = SqlSource(kind="sql", url="postgresql://me:secret@db/x", query=query).bind("m", "ts", tmp_path)
    assert sql.describe() == {"kind": "sql", "url": "postgresql://me:***@db/x"}


def test_a_bound_source_keeps_only_its_interval():
    frame = pd.DataFrame({"ts": ["2024-01-01 23:00", "2024-01-02 00:00", "2024-01-03 00:00"], "x": [1, 2, 3]})
    source = DataSource("test", "ts", lambda start, end: frame)
    assert source.load(datetime(2024, 1, 2), datetime(2024, 1, 3))["x"].tolist() == [2]


def test_the_sources_do_not_import_the_spec():
    """The spec imports the sources, never the other way round: no import cycle."""
    code = "import sys, ml_platform.core.sources; assert 'ml_platform.spec' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
