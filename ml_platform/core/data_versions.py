"""Data versions from content: the same rows and columns give the same version on any machine, so lineage
("which data made this model") is answered by comparing hashes, not timestamps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd


def content_hash(frame: pd.DataFrame) -> str:
    """A short hash of a frame's column names, dtypes and values (not its index). A Categorical column hashes
    as the text it holds (the same value hashes, whatever its level set), so storing a column as Categorical
    instead of text is not a new data version."""
    dtypes = ("object" if isinstance(t, pd.CategoricalDtype) else str(t) for t in frame.dtypes)
    digest = hashlib.sha256(",".join(f"{c}:{t}" for c, t in zip(frame.columns, dtypes, strict=True)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:24]


def versions_digest(versions: Mapping[str, str]) -> str:
    """One hash of a window's per-partition versions: what a model was trained on, in one tag."""
    return content_hash(pd.DataFrame({"v": [json.dumps(dict(versions))]}))


def versions_by_day(frame: pd.DataFrame, timestamp: str) -> dict[str, str]:
    """The content hash of each day's rows, keyed by ISO day, oldest first."""
    if frame.empty:
        return {}
    days = frame[timestamp].dt.strftime("%Y-%m-%d")
    return {day: content_hash(part.reset_index(drop=True)) for day, part in frame.groupby(days, sort=True)}


def versions_by_partition(
    frame: pd.DataFrame, timestamp: str, windows: Mapping[str, tuple[datetime, datetime]]
) -> dict[str, str]:
    """The content hash of the rows in each partition's time window [start, end), keyed by partition key in
    time order; partitions without rows are left out. For daily partitions it equals `versions_by_day`."""
    if frame.empty or not windows:
        return {}
    keys = sorted(windows, key=lambda k: windows[k][0])
    starts = np.array([np.datetime64(windows[k][0]) for k in keys], dtype="datetime64[ns]")
    ends = np.array([np.datetime64(windows[k][1]) for k in keys], dtype="datetime64[ns]")
    stamps = frame[timestamp].to_numpy(dtype="datetime64[ns]")
    position = np.searchsorted(starts, stamps, side="right") - 1
    inside = (position >= 0) & (stamps < ends[np.clip(position, 0, None)])
    rows = frame.loc[inside]
    return {keys[i]: content_hash(part.reset_index(drop=True)) for i, part in rows.groupby(position[inside], sort=True)}
