"""Data versions from content: the same rows and columns give the same version on any machine, so lineage
("which data made this model") is answered by comparing hashes, not timestamps."""

from __future__ import annotations

import hashlib

import pandas as pd


def content_hash(frame: pd.DataFrame) -> str:
    """A short hash of a frame's column names, dtypes and values (not its index)."""
    digest = hashlib.sha256(",".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:24]


def versions_by_day(frame: pd.DataFrame, timestamp: str) -> dict[str, str]:
    """The content hash of each day's rows, keyed by ISO day, oldest first."""
    if frame.empty:
        return {}
    days = frame[timestamp].dt.strftime("%Y-%m-%d")
    return {day: content_hash(part.reset_index(drop=True)) for day, part in frame.groupby(days, sort=True)}
