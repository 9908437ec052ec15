"""The prediction log's files: private to the server's user, and written by one process at a time.

The folder is 0700 and the database with its `-wal`, `-shm` and `-lock` files 0600. Several processes write
one log (the endpoint's workers; two servers during a blue/green switch): each write transaction is taken
under an exclusive lock on the `-lock` file first, so a writer that must wait is woken the moment the other is
done, instead of SQLite's busy handler polling with sleeps of up to 100 ms.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

LOG_FOLDER = "predictions"  # log_path's folder: the logs' own, tightened to 0700 when found wider
FOLDER_MODE, FILE_MODE = 0o700, 0o600


# --- private files -----------------------------------------------------------------------------------------


def _tighten(path: Path, mode: int, fd: int | None = None) -> None:
    """`path` to `mode` when it is wider and ours (another user's file is left alone, with a warning)."""
    try:
        found = os.fstat(fd) if fd is not None else os.stat(path)
    except FileNotFoundError:
        return
    if not found.st_mode & 0o777 & ~mode:
        return
    try:
        os.fchmod(fd, mode) if fd is not None else os.chmod(path, mode)
    except OSError as error:
        log.warning("prediction log: cannot restrict %s to %o: %s", path, mode, error)


def private_folder(folder: Path) -> None:
    """The log's folder is created 0700; the logs' own folder (`predictions`) is tightened to 0700 if wider. A
    folder given by the caller that holds other things (`/tmp`) keeps its mode."""
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another process made it, the same way
            pass
        else:
            os.chmod(folder, FOLDER_MODE)  # mkdir's mode passes through the umask; make it exact
            return
    if folder.name == LOG_FOLDER:
        _tighten(folder, FOLDER_MODE)


def private_file(path: Path) -> None:
    """The database file exists 0600 before SQLite opens it: SQLite gives `-wal` and `-shm` the database file's
    mode. Files of an older log that are wider are tightened. No umask change (the server is threaded)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        _tighten(path, FILE_MODE, fd)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        _tighten(Path(f"{path}{suffix}"), FILE_MODE)


class WriterLock:
    """`with lock:` holds the log's cross-process write lock (flock on `<log>-lock`); not re-entrant."""

    def __init__(self, path: str | Path):
        self.path = Path(f"{path}-lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        _tighten(self.path, FILE_MODE, self._fd)

    def __enter__(self) -> WriterLock:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
