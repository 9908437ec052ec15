"""The prediction log: every answered request, durably, in an append-only SQLite file (WAL mode).

The promise: a response is sent only after its log row is committed with `synchronous=FULL`, so a prediction
whose response left the server is in the log even if the server is killed (`kill -9`) right after. Commits
are grouped: one writer thread drains every row that arrived meanwhile into one transaction, so durability
costs one fsync per batch, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd

COLUMNS = ("request_id", "ts", "model", "version", "rows", "features", "outputs", "latency_ms",
           "shadow_version", "shadow_outputs", "routed")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,              -- unix time the request arrived
    model TEXT NOT NULL,
    version TEXT NOT NULL,         -- the version that answered
    rows INTEGER NOT NULL,
    features TEXT NOT NULL,        -- JSON list of the input rows
    outputs TEXT NOT NULL,         -- JSON list of the predictions returned
    latency_ms REAL NOT NULL,
    shadow_version TEXT,           -- the other version scored beside the answer (canary: the champion)
    shadow_outputs TEXT,
    routed TEXT NOT NULL           -- 'champion', 'canary'
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
"""
_INSERT = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_STOP = object()


def log_path(home: str | Path, model: str) -> Path:
    """Where a model's prediction log lives under the platform home: the endpoint writes it, monitoring reads it."""
    return Path(home) / "predictions" / f"{model}.sqlite"


def connect(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A generous busy timeout: during a blue/green switch two servers append to the same log.
    connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    return connection


class PredictionLog:
    """Append rows from the event loop; `await append(row)` returns once the row is on disk."""

    def __init__(self, path: str | Path, max_batch: int = 512):
        self.path = Path(path)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._max_batch = max_batch
        self._connection = connect(self.path)
        self._thread = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._thread.start()

    async def append(self, row: tuple) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((row, future, loop))
        await future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._connection.close()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            error = None
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                self._connection.executemany(_INSERT, [row for row, _, _ in batch])
                self._connection.execute("COMMIT")
            except Exception as failure:  # the requests fail; nothing is acknowledged that is not on disk
                error = failure
                try:
                    self._connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            for _, future, loop in batch:
                loop.call_soon_threadsafe(_resolve, future, error)
            if stop:
                return


def _resolve(future: asyncio.Future, error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


@contextlib.contextmanager
def _read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection: readers never create the file, never write, and (WAL) never block the server."""
    connection = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        yield connection
    finally:
        connection.close()


def read_log(path: str | Path) -> pd.DataFrame:
    """The whole log as a DataFrame (read-only; safe while the server writes)."""
    with _read_only(path) as connection:
        return pd.read_sql_query("SELECT * FROM predictions ORDER BY seq", connection)


def logged_rows(log_path, timestamp: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The logged input rows whose event time falls in [start, end), each with the prediction returned, the
    version that answered, the route, and the other version scored beside it (shadow or canary), if any.

    A row's event time is its `timestamp` field when the request carried one (a replayed day lands on that day),
    else the request's arrival time. No log yet, or no table yet, is no rows."""
    try:
        with _read_only(log_path) as connection:
            requests = pd.read_sql_query("SELECT ts, features, outputs, version, shadow_version, shadow_outputs, "
                                         "routed FROM predictions", connection)
    except (sqlite3.OperationalError, pd.errors.DatabaseError):
        return pd.DataFrame()
    rows = []
    for ts, features, outputs, version, shadow_version, shadow_outputs, routed in requests.itertuples(index=False):
        arrived = datetime.fromtimestamp(ts)
        shadows = json.loads(shadow_outputs) if shadow_outputs else None
        for i, (row, output) in enumerate(zip(json.loads(features), json.loads(outputs))):
            event = pd.to_datetime(row.get(timestamp), errors="coerce") if timestamp in row else arrived
            if pd.isna(event):
                event = arrived
            if start <= event < end:
                rows.append({**row, "prediction": output if not isinstance(output, list) else None,
                             "_version": version, "_shadow_version": shadow_version,
                             "_shadow_prediction": shadows[i] if shadows else None, "_routed": routed})
    return pd.DataFrame(rows)
