"""The prediction log's one reader, `logged_rows`, on a real log written by `PredictionLog` (and `connect`); the
log's privacy (file modes, whitelist, keyed hashes) and its bounds (retention, size cap) under concurrent writers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from ml_platform.serving.log_pruning import file_bytes
from ml_platform.serving.prediction_log import (
    COLUMNS,
    LogRow,
    PredictionLog,
    connect,
    log_path,
    logged_rows,
    read_log,
)

DAY, NEXT_DAY = datetime(2013, 6, 3), datetime(2013, 6, 4)


def _entry(
    request_id: str,
    arrived: datetime,
    rows: list[dict],
    outputs: list,
    version: str = "1",
    shadow_version: str | None = None,
    shadow_outputs: list | None = None,
    routed: str = "champion",
) -> LogRow:
    return LogRow(
        request_id=request_id,
        ts=arrived.timestamp(),
        model="flight_delay",
        version=version,
        rows=len(rows),
        features=json.dumps(rows),
        outputs=json.dumps(outputs),
        latency_ms=1.5,
        shadow_version=shadow_version,
        shadow_outputs=json.dumps(shadow_outputs) if shadow_outputs else None,
        routed=routed,
    )


def _write(path: Path, entries: list[LogRow]) -> None:
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
    _write(
        path,
        [
            # replayed rows carry their event time: they land on their own day whenever they arrived
            _entry(
                "a",
                late_evening,
                [
                    {"ts": "2013-06-03 00:00:00", "x": 1},
                    {"ts": "2013-06-04 00:00:00", "x": 2},
                    {"ts": "2013-06-03 23:59:59", "x": 3},
                ],
                [0.1, 0.2, 0.3],
            ),
            # no event time, or one that does not parse: the arrival time decides
            _entry("b", datetime(2013, 6, 3, 12), [{"x": 4}, {"ts": "not a time", "x": 5}], [0.4, 0.5]),
            _entry("c", NEXT_DAY, [{"x": 6}], [0.6]),
            # the other version scored beside the answer, and the route
            _entry(
                "d",
                late_evening,
                [{"ts": "2013-06-03 08:00:00", "x": 7}, {"ts": "2013-06-03 09:00:00", "x": 8}],
                [0.7, 0.8],
                version="2",
                shadow_version="1",
                shadow_outputs=[0.71, 0.81],
                routed="canary",
            ),
        ],
    )
    rows = logged_rows(path, "ts", DAY, NEXT_DAY)
    assert rows["x"].tolist() == [1, 3, 4, 5, 7, 8], "[start, end): the start is in, the end is out"
    assert list(rows.columns) == [
        "ts",
        "x",
        "prediction",
        "_probabilities",
        "_version",
        "_shadow_version",
        "_shadow_prediction",
        "_routed",
    ]
    assert rows["_probabilities"].isna().all()
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
    connection.execute(
        f"INSERT INTO predictions ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})",
        _entry("m", datetime(2013, 6, 3, 6), [{"x": 1}], [[0.2, 0.5, 0.3]]),
    )
    connection.close()
    rows = logged_rows(path, "ts", DAY, NEXT_DAY)
    assert rows["x"].tolist() == [1] and rows["prediction"].isna().all()


def test_multiclass_probabilities_reach_monitoring_in_their_own_column(tmp_path):
    path = tmp_path / "log.sqlite"
    _write(
        path,
        [
            _entry(
                "m",
                datetime(2013, 6, 3, 6),
                [{"x": 1}, {"x": 2}],
                [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]],
                shadow_version="2",
                shadow_outputs=[[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]],
            )
        ],
    )
    rows = logged_rows(path, "ts", DAY, NEXT_DAY)
    assert rows["_probabilities"].tolist() == [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]
    assert rows["prediction"].isna().all() and rows["_shadow_prediction"].tolist()[1] == [0.3, 0.3, 0.4]


def test_no_log_or_an_empty_log_is_no_rows(tmp_path):
    missing = tmp_path / "predictions" / "never.sqlite"
    assert logged_rows(missing, "ts", DAY, NEXT_DAY).empty
    assert not missing.exists(), "reading never creates the log"
    empty = tmp_path / "empty.sqlite"
    connect(empty).close()
    assert logged_rows(empty, "ts", DAY, NEXT_DAY).empty
    assert isinstance(logged_rows(empty, "ts", DAY, NEXT_DAY), pd.DataFrame)


# --- private, whitelisted, bounded -------------------------------------------------------------------------------

MANIFEST = {
    "features": {"numeric": ["distance", "temp"], "categorical": ["carrier", "dest"], "levels": {}},
    "timestamp": "scheduled_departure",
    "key": "flight_id",
}
REQUEST = {
    "distance": 1400.0,
    "temp": 61,
    "carrier": "UA",
    "dest": "IAH",
    "scheduled_departure": "2013-06-03 05:15",
    "flight_id": "UA1545",
    "ssn": "123-45-6789",
    "email": "someone@example.com",
}


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def _append_rows(log: PredictionLog, entries: list[LogRow], at_once: int = 1) -> None:
    """Append `at_once` requests at a time (about one commit batch), each awaited until acknowledged."""

    async def append_all() -> None:
        for start in range(0, len(entries), at_once):
            await asyncio.gather(*(log.append(entry) for entry in entries[start : start + at_once]))

    asyncio.run(append_all())


def test_the_log_folder_is_0700_and_its_files_0600_without_touching_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        path = log_path(tmp_path / "home", "flight_delay")
        log = PredictionLog(path)
        _append_rows(log, [_entry("a", DAY, [{"x": 1}], [0.1])])
        assert os.umask(0o022) == 0o022, "the process umask is left alone"
        assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
        assert _mode(f"{path}-wal") == 0o600 and _mode(f"{path}-shm") == 0o600, "SQLite copies the db file's mode"
        log.close()
        # an older log in a wider folder: the logs' own folder and files are tightened when opened
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o644)
        connect(path).close()
        assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
        # a folder the caller chose that holds other things keeps its mode; the log file in it is private
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        PredictionLog(shared / "log.sqlite").close()
        assert _mode(shared) == 0o755 and _mode(shared / "log.sqlite") == 0o600
    finally:
        os.umask(umask)


def test_only_the_models_fields_are_stored_and_redacted_ones_as_keyed_hashes(tmp_path):
    log = PredictionLog(tmp_path / "log.sqlite")
    try:
        policy = log.policy(MANIFEST, ["dest", "temp", "not_a_feature"])
        assert policy.fields == ("distance", "temp", "carrier", "dest", "scheduled_departure", "flight_id")
        assert policy.redact == ("dest", "temp")
        request = [dict(REQUEST), {**REQUEST, "dest": None, "temp": 62}, {"dest": "IAH", "distance": 10}]
        (first, second, third) = policy.view(request)
        assert request[0] == REQUEST, "the request's rows are not changed"
        assert "ssn" not in first and "email" not in first, "unknown fields are never stored"
        assert list(first) == ["distance", "temp", "carrier", "dest", "scheduled_departure", "flight_id"]
        assert {k: first[k] for k in ("distance", "carrier", "scheduled_departure", "flight_id")} == {
            "distance": 1400.0,
            "carrier": "UA",
            "scheduled_departure": "2013-06-03 05:15",
            "flight_id": "UA1545",
        }
        assert re.fullmatch("[0-9a-f]{16}", first["dest"]) and re.fullmatch("[0-9a-f]{16}", first["temp"])
        assert first["dest"] == third["dest"] and first["temp"] != second["temp"], "equal values, equal hashes"
        assert second["dest"] is None, "a missing value stays missing"
        assert policy.hashed(61) == policy.hashed("61") != policy.hashed(61.5), "a number as its JSON text"
        assert policy.hashed(True) == policy.hashed("true") and len(policy.hashed([1, 2])) == 16
        assert log.policy(MANIFEST, []).view([REQUEST])[0]["dest"] == "IAH"
    finally:
        log.close()


def test_redaction_hashes_are_stable_across_restarts_and_processes_sharing_the_file(tmp_path):
    path = tmp_path / "log.sqlite"
    one, two = PredictionLog(path), PredictionLog(path)  # two workers of one endpoint
    hashed = one.policy(MANIFEST, ["dest"]).view([REQUEST])[0]["dest"]
    assert two.policy(MANIFEST, ["dest"]).view([REQUEST])[0]["dest"] == hashed
    one.close()
    two.close()
    again = PredictionLog(path)
    assert again.policy(MANIFEST, ["dest"]).view([REQUEST])[0]["dest"] == hashed, "the secret lives in the file"
    again.close()
    other = PredictionLog(tmp_path / "other.sqlite")
    assert other.policy(MANIFEST, ["dest"]).view([REQUEST])[0]["dest"] != hashed, "a secret per log"
    other.close()
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM meta WHERE key = 'secret'").fetchone() == (1,)
    connection.close()


def test_retention_deletes_rows_older_than_it_and_only_those(tmp_path):
    path = tmp_path / "log.sqlite"
    now = datetime.now()
    log = PredictionLog(path, retention=timedelta(days=30), prune_interval_s=3600)
    try:
        _append_rows(
            log,
            [_entry(f"old{i}", now - timedelta(days=31 + i), [{"x": i}], [0.1]) for i in range(5)]
            + [_entry(f"new{i}", now - timedelta(days=29, hours=i), [{"x": i}], [0.1]) for i in range(5)],
        )
        result = log.prune()
        assert result["expired"] == 5 and result["over_size"] == 0
        assert sorted(read_log(path)["request_id"]) == [f"new{i}" for i in range(5)]
        assert log.prune()["expired"] == 0
    finally:
        log.close()


def test_the_size_cap_holds_the_file_under_it_while_appends_go_on(tmp_path):
    path, cap = tmp_path / "log.sqlite", 1 << 20
    padding = "p" * 800
    log = PredictionLog(path, max_bytes=cap, prune_interval_s=0.01)
    try:
        entries = [_entry(f"r{i}", datetime.now(), [{"x": i, "pad": padding}], [0.5]) for i in range(5000)]
        _append_rows(log, entries, at_once=20)  # about 5 MB of rows, pruned meanwhile: every append acknowledged
        log.prune()  # the cap holds after each pass (between passes the file grows by what arrives)
        assert file_bytes(path) <= cap, f"{file_bytes(path)} bytes over the {cap}-byte cap"
        kept = read_log(path)["request_id"].tolist()
        assert 0 < len(kept) < 5000 and kept == [f"r{i}" for i in range(5000 - len(kept), 5000)], (
            "the oldest rows go first; the newest are kept"
        )
        connection = sqlite3.connect(path)
        assert connection.execute("PRAGMA auto_vacuum").fetchone() == (2,), "a new log gives space back"
        connection.close()
    finally:
        log.close()
    assert file_bytes(path) <= cap


def test_pruning_beside_two_writers_never_loses_an_acknowledged_recent_row(tmp_path):
    path, now = tmp_path / "log.sqlite", datetime.now()
    one = PredictionLog(path, retention=timedelta(days=1), prune_interval_s=0.005)
    two = PredictionLog(path, retention=timedelta(days=1), prune_interval_s=0.005)

    async def traffic(log: PredictionLog, name: str) -> None:
        for i in range(600):  # old rows arrive too (as if replayed from long ago) and are pruned meanwhile
            await asyncio.gather(
                log.append(_entry(f"{name}-new{i}", now, [{"x": i}], [0.5])),
                log.append(_entry(f"{name}-old{i}", now - timedelta(days=2), [{"x": i}], [0.5])),
            )

    async def both() -> None:
        await asyncio.gather(traffic(one, "a"), traffic(two, "b"))

    try:
        asyncio.run(both())
        one.prune()
    finally:
        one.close()
        two.close()
    kept = set(read_log(path)["request_id"])
    assert kept == {f"{name}-new{i}" for name in "ab" for i in range(600)}


def test_an_older_log_without_meta_or_auto_vacuum_keeps_working(tmp_path):
    """A log from before: written with the old schema, no secret, no incremental vacuum."""
    path = tmp_path / "predictions" / "flight_delay.sqlite"
    path.parent.mkdir()
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(_OLD_SCHEMA)
    old.executemany(
        f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [_entry(f"o{i}", DAY, [{"x": i, "pad": "p" * 800}], [0.1]) for i in range(3000)],
    )
    old.close()
    assert len(read_log(path)) == 3000 and len(logged_rows(path, "ts", DAY, NEXT_DAY)) == 3000
    before = file_bytes(path)
    log = PredictionLog(path, max_bytes=before // 2, prune_interval_s=3600)
    try:
        assert len(log.policy(MANIFEST, ["dest"]).view([REQUEST])[0]["dest"]) == 16
        _append_rows(log, [_entry("new", NEXT_DAY, [{"x": -1}], [0.2])])
        first = log.prune()
        assert 0 < first["over_size"] < 3000, "the oldest rows go until the live data fits"
        assert log.prune()["over_size"] == 0, "a file that cannot shrink is not emptied for it"
        assert "new" in set(read_log(path)["request_id"])
    finally:
        log.close()
    assert len(logged_rows(path, "ts", DAY, datetime(2013, 6, 5))) == 3001 - first["over_size"]


_OLD_SCHEMA = """
CREATE TABLE predictions (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, ts REAL NOT NULL,
    model TEXT NOT NULL, version TEXT NOT NULL, rows INTEGER NOT NULL, features TEXT NOT NULL, outputs TEXT NOT NULL,
    latency_ms REAL NOT NULL, shadow_version TEXT, shadow_outputs TEXT, routed TEXT NOT NULL);
CREATE INDEX predictions_ts ON predictions (ts);
"""


def test_fsync_is_on_unless_the_spec_turns_it_off(tmp_path):
    """synchronous=FULL (2) fsyncs every group commit; NORMAL (1) leaves a committed row to the OS's cache."""
    durable, cached = PredictionLog(tmp_path / "a.sqlite"), PredictionLog(tmp_path / "b.sqlite", fsync=False)
    try:
        assert durable._connection.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert cached._connection.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        durable.close()
        cached.close()
