"""The prediction log: every answered request, durably, in an append-only SQLite file (WAL mode).

The promise: a response is sent only after its log row is committed with `synchronous=FULL`, so a prediction
whose response left the server is in the log even if the server is killed (`kill -9`) right after. Commits
are grouped: the rows that arrive while a commit runs share the next one (one transaction, one INSERT, one
fsync, one future, one wake-up of the writer thread and one back), so durability costs per batch, not per
request; the writer starts the next commit the moment one ends, without waiting for the event loop.

Privacy: the log's folder is 0700 and its files (the database, `-wal`, `-shm`) 0600. Rows keep only what the
model's `LogPolicy` lets through (its features, the event-time and key columns); features listed in
`serving.log.redact` are stored as keyed hashes (HMAC-SHA256 with a secret made once per log file and kept in
it, so hashes match across restarts and across the server processes that share the file). Retention and a
size cap are enforced by a pruning thread with its own connection, in short transactions between the
writers' commits.

Length: the writer, its group commit and the policy of what a row keeps are one durability promise, kept in
one file (file modes and the writers' lock are in `log_files`, pruning in `log_pruning`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict, cast

import pandas as pd

from ml_platform.serving.log_files import LOG_FOLDER, WriterLock, private_file, private_folder
from ml_platform.serving.log_pruning import PruneResult, prune, size_settings

if TYPE_CHECKING:
    from ml_platform.serving.validation import Row

log = logging.getLogger(__name__)


class LogRow(NamedTuple):
    """One logged request: a field per column of the log (`COLUMNS` are these names), built by name per request
    and handed to SQLite as the tuple it is."""

    request_id: str
    ts: float  # unix time the request arrived
    model: str
    version: str  # the version that answered
    rows: int
    features: str  # JSON list of the input rows (as the model's LogPolicy lets them through)
    outputs: str  # JSON list of the predictions returned
    latency_ms: float
    shadow_version: str | None  # the other version scored beside the answer (canary: the champion)
    shadow_outputs: str | None  # its outputs, as JSON
    routed: str  # 'champion', 'canary'


COLUMNS: tuple[str, ...] = LogRow._fields
_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,              -- unix time the request arrived
    model TEXT NOT NULL,
    version TEXT NOT NULL,         -- the version that answered
    rows INTEGER NOT NULL,
    features TEXT NOT NULL,        -- JSON list of the input rows (as the model's LogPolicy lets them through)
    outputs TEXT NOT NULL,         -- JSON list of the predictions returned
    latency_ms REAL NOT NULL,
    shadow_version TEXT,           -- the other version scored beside the answer (canary: the champion)
    shadow_outputs TEXT,
    routed TEXT NOT NULL           -- 'champion', 'canary'
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_ROW = f"({', '.join('?' * len(COLUMNS))})"


def _insert(rows: int) -> str:
    """One INSERT for a whole batch: one statement step (one release of the GIL), not one per row."""
    return f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}"


HASH_CHARS = 16


def log_path(home: str | Path, model: str) -> Path:
    """Where a model's prediction log lives under the platform home: the endpoint writes it, monitoring reads it."""
    return Path(home) / LOG_FOLDER / f"{model}.sqlite"


def connect(path: str | Path, timeout: float = 30) -> sqlite3.Connection:
    """A writing connection to a private log, schema created. New logs reclaim space incrementally."""
    path = Path(path)
    private_folder(path.parent)
    private_file(path)
    # A generous busy timeout: during a blue/green switch, and with several workers, servers share the log.
    connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=timeout)
    connection.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file only: before any table
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    return connection


def _secret(connection: sqlite3.Connection) -> bytes:
    """The log's hashing key: made by whichever process opens the file first, then read by all."""
    connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)", (secrets.token_hex(32),))
    (value,) = connection.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
    return bytes.fromhex(value)


# --- what a row keeps -------------------------------------------------------------------------------------


class LogPolicy:
    """What of a request row the log stores: only `fields` (the model's features, its event-time and key
    columns); anything else a client sends (`ssn`, `email`) is dropped. Values of `redact` are replaced by a
    keyed hash (HMAC-SHA256 under the log's secret, first 16 hex characters; a non-string is hashed as its JSON
    text, None stays None), equal for equal values, so counts and joins on them still work."""

    __slots__ = ("_cache", "_keep", "_secret", "fields", "redact")

    def __init__(self, fields: Iterable[str | None], redact: Iterable[str], secret: bytes):
        self.fields = tuple(dict.fromkeys(name for name in fields if name))
        self.redact = tuple(name for name in dict.fromkeys(redact) if name in self.fields)
        self._keep = frozenset(self.fields)
        self._secret = secret
        self._cache: dict[str, str] = {}

    def view(self, rows: list[Row]) -> list[Row]:
        """The rows as the log stores them (new dicts; the request's rows are untouched)."""
        keep = self._keep
        views = [{name: value for name, value in row.items() if name in keep} for row in rows]
        if self.redact:
            for row in views:
                for name in self.redact:
                    value = row.get(name)
                    if value is not None:
                        row[name] = self.hashed(value)
        return views

    def hashed(self, value: Any) -> str:
        """The stored form of a redacted value: its text's keyed hash (memoized: levels and numbers repeat)."""
        kind = type(value)
        if kind is str:
            text = value
        elif kind is int or (kind is float and value - value == 0):  # finite: JSON's text is repr's
            text = repr(value)
        else:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) >= 65536:  # free text and unique ids must not grow it forever
                self._cache.clear()
            cached = self._cache[text] = self._digest(text)
        return cached

    def _digest(self, text: str) -> str:
        return hmac.digest(self._secret, text.encode(), "sha256").hex()[:HASH_CHARS]


# --- the writer and the pruner ----------------------------------------------------------------------------


class _Batch:
    """The rows of one event loop waiting for the next commit, and the future that commit resolves."""

    __slots__ = ("done", "rows")
    rows: list[LogRow]
    done: asyncio.Future[None]

    def __init__(self, done: asyncio.Future[None]):
        self.rows, self.done = [], done


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class PredictionLog:
    """Append rows from the event loop; `await append(row)` returns once the row is on disk.

    With `retention` or `max_bytes`, a pruning thread with its own connection deletes, at most every
    `prune_interval_s`, rows that arrived longer than `retention` ago and, while the file (database + WAL) is
    over `max_bytes`, the oldest rows until it is under about 90% of it; then it gives the space back. Its
    transactions are short (≤ log_pruning.PRUNE_ROWS rows) and it waits between them as long as it held the lock, so
    writers, of this process or another, are never held up for more than one of them."""

    def __init__(
        self,
        path: str | Path,
        max_batch: int = 512,
        retention: timedelta | None = None,
        max_bytes: int | None = None,
        prune_interval_s: float = 60,
        fsync: bool = True,
    ):
        self.path = Path(path)
        self.retention, self.max_bytes, self.prune_interval_s = retention, max_bytes, prune_interval_s
        self._max_batch = max_batch
        self._pending: dict[asyncio.AbstractEventLoop, _Batch] = {}  # rows waiting for the next commit, by loop
        self._guard = threading.Lock()
        self._wake = threading.Condition(self._guard)
        self._closing = False
        self._connection = connect(self.path)
        if not fsync:  # a commit then survives a killed server (it is in the OS's cache), not a power loss
            self._connection.execute("PRAGMA synchronous=NORMAL")
        self._lock = WriterLock(self.path)
        size_settings(self._connection, max_bytes)
        self._secret = _secret(self._connection)
        self._stopping = threading.Event()
        self._pruning = threading.Lock()
        self._prune_connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._thread.start()
        self._pruner: threading.Thread | None = None
        if retention is not None or max_bytes is not None:
            self._pruner = threading.Thread(target=self._prune_loop, name="prediction-log-prune", daemon=True)
            self._pruner.start()

    def policy(self, manifest: dict[str, Any], redact: Iterable[str]) -> LogPolicy:
        """What this log keeps of a model's request rows: the manifest's features, its `timestamp` and `key`;
        `redact` hashed under this log's secret."""
        features = manifest.get("features") or {}
        return LogPolicy(
            [
                *features.get("numeric", []),
                *features.get("categorical", []),
                manifest.get("timestamp"),
                manifest.get("key"),
            ],
            redact,
            self._secret,
        )

    async def append(self, row: LogRow) -> None:
        """Return once `row` is committed. Rows that arrive while a commit runs share the next one, and one
        future: a batch costs one wake-up of the writer thread and one wake-up back, whatever its size."""
        loop = asyncio.get_running_loop()
        with self._guard:
            batch = self._pending.get(loop)
            if batch is None:
                if not self._pending:
                    self._wake.notify()
                batch = self._pending[loop] = _Batch(loop.create_future())
            batch.rows.append(row)
        await batch.done

    def _write_loop(self) -> None:
        """Commit whatever is pending, as soon as the previous commit is done (no round trip to the loop)."""
        while True:
            with self._guard:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending:
                    return
                pending, self._pending = self._pending, {}
            error = None
            try:
                self._commit([row for batch in pending.values() for row in batch.rows])
            except Exception as failure:  # the requests fail; nothing is acknowledged that is not on disk
                error = failure
            for loop, batch in pending.items():
                loop.call_soon_threadsafe(_resolve, batch.done, error)

    def _commit(self, rows: list[LogRow]) -> None:
        """One transaction for the rows, in INSERTs of at most max_batch rows (one statement step each)."""
        with self._lock:  # other processes writing this log wait here, woken as soon as it is released
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                for start in range(0, len(rows), self._max_batch):
                    chunk = rows[start : start + self._max_batch]
                    self._connection.execute(_insert(len(chunk)), [value for row in chunk for value in row])
                self._connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._stopping.set()
        with self._guard:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        if self._pruner is not None:
            self._pruner.join(timeout=10)
        self._connection.close()
        self._lock.close()
        with self._pruning:
            if self._prune_connection is not None:
                self._prune_connection.close()
                self._prune_connection = None

    def prune(self) -> PruneResult:
        """One pruning pass now (the pruning thread runs one every `prune_interval_s`): rows deleted as
        `expired` (older than `retention`) and `over_size`, and the file's `bytes` (database + WAL) after."""
        with self._pruning:
            if self._prune_connection is None:
                # Its own connection; a short busy timeout: a pass that cannot get the lock is retried later.
                self._prune_connection = connect(self.path, timeout=5)
                self._prune_connection.execute("PRAGMA synchronous=NORMAL")  # deletes need no fsync of their own
                size_settings(self._prune_connection, self.max_bytes)
            cutoff = time.time() - self.retention.total_seconds() if self.retention is not None else None
            return prune(self._prune_connection, self.path, cutoff, self.max_bytes, self._stopping, self._lock)

    def _prune_loop(self) -> None:
        """A pass every `prune_interval_s`, the first one interval after the start (not on the startup path)."""
        while not self._stopping.wait(max(self.prune_interval_s, 0.001)):
            try:
                self.prune()
            except Exception as error:  # pruning is housekeeping: requests go on, the next pass retries
                log.warning(
                    "prediction log %s: pruning failed, retried in %ss: %s", self.path, self.prune_interval_s, error
                )


# --- readers ------------------------------------------------------------------------------------------------


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


def logged_rows(log_path: str | Path, timestamp: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The logged input rows whose event time falls in [start, end), each with the prediction returned, the
    version that answered, the route, and the other version scored beside it (shadow or canary), if any.
    A multiclass answer (a list of probabilities in class order) is in `_probabilities`, its `prediction` None.

    A row's event time is its `timestamp` field when the request carried one (a replayed day lands on that day),
    else the request's arrival time. No log yet, or no table yet, is no rows."""
    try:
        with _read_only(log_path) as connection:
            requests = pd.read_sql_query(
                "SELECT ts, features, outputs, version, shadow_version, shadow_outputs, routed FROM predictions",
                connection,
            )
    except (sqlite3.OperationalError, pd.errors.DatabaseError):
        return pd.DataFrame()
    rows: list[dict[str, Any]] = []
    for ts, features, outputs, version, shadow_version, shadow_outputs, routed in requests.itertuples(index=False):
        arrived = datetime.fromtimestamp(ts)
        shadows = json.loads(shadow_outputs) if shadow_outputs else None
        for i, (row, output) in enumerate(zip(json.loads(features), json.loads(outputs), strict=False)):
            event = pd.to_datetime(row.get(timestamp), errors="coerce") if timestamp in row else arrived
            if pd.isna(event):
                event = arrived
            if start <= event < end:
                vector = isinstance(output, list)  # a multiclass answer: probabilities in class order
                rows.append(
                    {
                        **row,
                        "prediction": None if vector else output,
                        "_probabilities": output if vector else None,
                        "_version": version,
                        "_shadow_version": shadow_version,
                        "_shadow_prediction": shadows[i] if shadows else None,
                        "_routed": routed,
                    }
                )
    return pd.DataFrame(rows)


class LoggedEntry(TypedDict):
    """One log entry of a request as `logged_request` reads it: its columns but not its rows' values."""

    request_id: str
    ts: float
    model: str
    version: str
    rows: int
    routed: str
    shadow_version: str | None
    latency_ms: float


REQUEST_COLUMNS: tuple[str, ...] = tuple(LoggedEntry.__annotations__)


def logged_request(log_path: str | Path, request_id: str) -> list[LoggedEntry]:
    """The log's entries of one request id, oldest first (`REQUEST_COLUMNS`: not its rows' values), read-only.
    One, unless an id was reused; none when the log holds no such request (or no table yet)."""
    try:
        with _read_only(log_path) as connection:
            found = connection.execute(
                f"SELECT {', '.join(REQUEST_COLUMNS)} FROM predictions WHERE request_id = ? ORDER BY seq",
                (request_id,),
            ).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    # the SELECT names the entry's keys: each row holds their values, in REQUEST_COLUMNS' order
    return [cast(LoggedEntry, dict(zip(REQUEST_COLUMNS, row, strict=True))) for row in found]
