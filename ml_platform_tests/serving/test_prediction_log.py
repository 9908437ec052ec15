"""The prediction log's one reader, `logged_rows`, on a real log written by `PredictionLog` (and `connect`)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pandas as pd

from ml_platform.serving.prediction_log import COLUMNS, PredictionLog, connect, log_path, logged_rows, read_log

DAY, NEXT_DAY = datetime(2013, 6, 3), datetime(2013, 6, 4)


def _entry(request_id: str, arrived: datetime, rows: list[dict], outputs: list, version: str = "1",
           shadow_version: str | None = None, shadow_outputs: list | None = None, routed: str = "champion") -> tuple:
    return (request_id, arrived.timestamp(), "flight_delay", version, len(rows), json.dumps(rows),
            json.dumps(outputs), 1.5, shadow_version, json.dumps(shadow_outputs) if shadow_outputs else None, routed)


def _write(path: Path, entries: list[tuple]) -> None:
    """Append through the server's writer: each append returns once its row is committed."""
    async def append_all() -> None:
        log = PredictionLog(path)
        try:
            for entry in entries:
                await log.append(entry)
        finally:
            log.close()

    asyncio.run(append_all())


def test_the_log_lives_under_the_home_by_model(tmp_path):
    assert log_path(tmp_path, "flight_delay") == tmp_path / "predictions" / "flight_delay.sqlite"
    assert log_path(str(tmp_path), "other") == tmp_path / "predictions" / "other.sqlite"


def test_rows_are_placed_by_event_time_else_arrival_within_the_window(tmp_path):
    path = log_path(tmp_path, "flight_delay")
    late_evening = datetime(2013, 6, 2, 23, 0)
    _write(path, [
        # replayed rows carry their event time: they land on their own day whenever they arrived
        _entry("a", late_evening, [{"ts": "2013-06-03 00:00:00", "x": 1}, {"ts": "2013-06-04 00:00:00", "x": 2},
                                   {"ts": "2013-06-03 23:59:59", "x": 3}], [0.1, 0.2, 0.3]),
        # no event time, or one that does not parse: the arrival time decides
        _entry("b", datetime(2013, 6, 3, 12), [{"x": 4}, {"ts": "not a time", "x": 5}], [0.4, 0.5]),
        _entry("c", NEXT_DAY, [{"x": 6}], [0.6]),
        # the other version scored beside the answer, and the route
        _entry("d", late_evening, [{"ts": "2013-06-03 08:00:00", "x": 7}, {"ts": "2013-06-03 09:00:00", "x": 8}],
               [0.7, 0.8], version="2", shadow_version="1", shadow_outputs=[0.71, 0.81], routed="canary"),
    ])
    rows = logged_rows(path, "ts", DAY, NEXT_DAY)
    assert rows["x"].tolist() == [1, 3, 4, 5, 7, 8], "[start, end): the start is in, the end is out"
    assert list(rows.columns) == ["ts", "x", "prediction", "_version", "_shadow_version", "_shadow_prediction",
                                  "_routed"]
    assert rows["prediction"].tolist() == [0.1, 0.3, 0.4, 0.5, 0.7, 0.8]
    assert rows["_version"].tolist() == ["1", "1", "1", "1", "2", "2"]
    assert rows["_routed"].tolist() == ["champion"] * 4 + ["canary"] * 2
    beside = rows[rows["_shadow_version"].notna()]
    assert beside["_shadow_version"].tolist() == ["1", "1"]
    assert beside["_shadow_prediction"].tolist() == [0.71, 0.81]
    assert rows.loc[rows["_shadow_version"].isna(), "_shadow_prediction"].isna().all()
    assert logged_rows(path, "ts", NEXT_DAY, datetime(2013, 6, 5))["x"].tolist() == [2, 6]
    assert logged_rows(path, "ts", datetime(2013, 6, 1), DAY).empty, "an event time is never overruled by arrival"
    assert len(read_log(path)) == 4 and list(read_log(path).columns) == ["seq", *COLUMNS]


def test_multiclass_outputs_are_kept_out_of_the_prediction_column(tmp_path):
    path = tmp_path / "log.sqlite"
    connection = connect(path)
    columns = ", ".join(COLUMNS)
    connection.execute(f"INSERT INTO predictions ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})",
                       _entry("m", datetime(2013, 6, 3, 6), [{"x": 1}], [[0.2, 0.5, 0.3]]))
    connection.close()
    rows = logged_rows(path, "ts", DAY, NEXT_DAY)
    assert rows["x"].tolist() == [1] and rows["prediction"].isna().all()


def test_no_log_or_an_empty_log_is_no_rows(tmp_path):
    missing = tmp_path / "predictions" / "never.sqlite"
    assert logged_rows(missing, "ts", DAY, NEXT_DAY).empty
    assert not missing.exists(), "reading never creates the log"
    empty = tmp_path / "empty.sqlite"
    connect(empty).close()
    assert logged_rows(empty, "ts", DAY, NEXT_DAY).empty
    assert isinstance(logged_rows(empty, "ts", DAY, NEXT_DAY), pd.DataFrame)
