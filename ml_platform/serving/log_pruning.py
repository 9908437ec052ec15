"""Keeping the prediction log within its retention and size cap without holding up the requests that write it.

Every step is a short transaction (at most PRUNE_ROWS rows deleted or VACUUM_PAGES pages given back), followed by
as long a pause, so writers of this process or another get the lock at least half the time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TypedDict

PRUNE_ROWS = 2000  # rows deleted per pruning transaction at most (about 10 ms of lock)
VACUUM_PAGES = 256  # pages given back per transaction at most (about 10-30 ms of lock)
SIZE_TARGET = 0.9  # a log over its cap is cut back to this share of it (database and WAL together)


class PruneResult(TypedDict):
    """What one pruning pass did: rows deleted for their age and for the size cap, and the log's bytes after."""

    expired: int
    over_size: int
    bytes: int


def _wal_allowance(max_bytes: int) -> int:
    """The WAL's share of the cap: it is checkpointed at that size and truncated back to it."""
    return min(max_bytes // 16, 64 << 20)


def size_settings(connection: sqlite3.Connection, max_bytes: int | None) -> None:
    """Under a size cap, keep the WAL within its share (the defaults let it reach 4 MB, a small cap's whole)."""
    if max_bytes is None:
        return
    page = connection.execute("PRAGMA page_size").fetchone()[0]
    allowance = _wal_allowance(max_bytes)
    connection.execute(f"PRAGMA wal_autocheckpoint={max(16, min(1000, allowance // page))}")
    connection.execute(f"PRAGMA journal_size_limit={allowance}")


def file_bytes(path: str | Path) -> int:
    """The log's size on disk: the database and its WAL."""
    return sum(os.stat(p).st_size for p in (str(path), f"{path}-wal") if os.path.exists(p))


def prune(
    connection: sqlite3.Connection,
    path: Path,
    cutoff: float | None,
    max_bytes: int | None,
    stopping: threading.Event,
    lock: contextlib.AbstractContextManager[object] | None = None,
) -> PruneResult:
    """Delete rows older than `cutoff` and, over `max_bytes`, the oldest; give the space back. Each
    transaction is taken under `lock` (the log's cross-process writer lock)."""
    held: contextlib.AbstractContextManager[object] = lock if lock is not None else contextlib.nullcontext()
    expired = over_size = 0
    if cutoff is not None:
        while not stopping.is_set():
            deleted = _delete(
                connection, held, "SELECT seq FROM predictions WHERE ts < ? ORDER BY ts LIMIT ?", (cutoff, PRUNE_ROWS)
            )
            expired += deleted
            if deleted < PRUNE_ROWS:
                break
    over = max_bytes is not None and file_bytes(path) > max_bytes
    if max_bytes is not None and over:
        # Live bytes (pages in use), not the file's size: an older log without auto_vacuum never shrinks, and
        # must not be emptied for it (its freed pages are reused instead).
        target = int(max_bytes * SIZE_TARGET) - _wal_allowance(max_bytes)
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        while not stopping.is_set():
            pages, free = (connection.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count"))
            live = (pages - free) * page_size
            first, last = connection.execute(
                "SELECT (SELECT min(seq) FROM predictions), (SELECT max(seq) FROM predictions)"
            ).fetchone()
            if live <= target or first is None:
                break
            rows = last - first + 1
            needed = -(-(live - target) * rows // live)  # rows of average size to go, rounded up
            deleted = _delete(
                connection, held, "SELECT seq FROM predictions ORDER BY seq LIMIT ?", (max(1, min(PRUNE_ROWS, needed)),)
            )
            over_size += deleted
            if not deleted:
                break
    if expired or over:
        _reclaim(connection, stopping, held)
    return {"expired": expired, "over_size": over_size, "bytes": file_bytes(path)}


def _delete(
    connection: sqlite3.Connection,
    lock: contextlib.AbstractContextManager[object],
    select: str,
    parameters: tuple[object, ...],
) -> int:
    """One short transaction; then as long a pause, so writers get the lock at least half the time."""
    started = time.perf_counter()
    with lock:
        connection.execute("BEGIN IMMEDIATE")
        try:
            deleted = connection.execute(f"DELETE FROM predictions WHERE seq IN ({select})", parameters).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    time.sleep(min(time.perf_counter() - started, 0.5))
    return deleted


def _reclaim(
    connection: sqlite3.Connection, stopping: threading.Event, lock: contextlib.AbstractContextManager[object]
) -> None:
    """Give freed pages back to the file system (logs created with auto_vacuum=INCREMENTAL; older ones reuse
    them in place), in short steps; then copy the WAL into the database without
    waiting for anyone (PASSIVE), and truncate the WAL if that is possible at once."""
    if connection.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        while not stopping.is_set() and connection.execute("PRAGMA freelist_count").fetchone()[0]:
            started = time.perf_counter()
            # executescript steps the pragma to its end (execute would free one page and stop)
            with lock:
                connection.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            time.sleep(min(time.perf_counter() - started, 0.5))
    _, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if frames == copied:  # all in the database: a WAL truncation waits for nobody
        timeout = connection.execute("PRAGMA busy_timeout").fetchone()[0]
        connection.execute("PRAGMA busy_timeout=0")
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:
            pass
        finally:
            connection.execute(f"PRAGMA busy_timeout={timeout}")
