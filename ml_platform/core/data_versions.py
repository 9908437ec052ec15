"""Data versions from content: the same rows and columns give the same version on any machine, so lineage
("which data made this model") is answered by comparing hashes, not timestamps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd


def content_hash(frame: pd.DataFrame) -> str:
    """A short hash of a frame's column names, dtypes and values (not its index). A Categorical column hashes
    as the text it holds (the same value hashes, whatever its level set), so storing a column as Categorical
    instead of text is not a new data version."""
    return _digest(_header(frame), pd.util.hash_pandas_object(frame, index=False).to_numpy())


def content_hashes(frame: pd.DataFrame, partition_of: pd.Series, keys: Sequence[str]) -> dict[str, str]:
    """The content hash of each partition's rows (`partition_of`: each row's key; a partition's rows in frame
    order), equal to `content_hash` of each partition alone but from one pass over the frame: a row's hash
    depends on that row only, so the rows are hashed once and each partition digests its own. A key without
    rows gets the hash of no rows. Columns whose row hashes could depend on their neighbours (objects other
    than text) are hashed partition by partition."""
    header = _header(frame)
    codes, uniques = pd.factorize(partition_of.to_numpy(dtype=object), sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    rows_of = {key: order[bounds[i] : bounds[i + 1]] for i, key in enumerate(uniques)}
    if not all(_row_local(frame[name]) for name in frame.columns):
        return {key: content_hash(frame.iloc[rows_of[key]] if key in rows_of else frame.iloc[0:0]) for key in keys}
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    none = np.empty(0, dtype=np.intp)
    return {key: _digest(header, hashes[rows_of.get(key, none)]) for key in keys}


def _header(frame: pd.DataFrame) -> str:
    dtypes = ("object" if isinstance(t, pd.CategoricalDtype) else str(t) for t in frame.dtypes)
    return ",".join(f"{c}:{t}" for c, t in zip(frame.columns, dtypes, strict=True))


def _digest(header: str, row_hashes: np.ndarray) -> str:
    digest = hashlib.sha256(header.encode())
    digest.update(np.ascontiguousarray(row_hashes).tobytes())
    return digest.hexdigest()[:24]


def _row_local(column: pd.Series) -> bool:
    """Whether each value's hash depends on that value alone. pandas hashes objects as text, but falls back to
    `str()` of every value when any is not text (bytes then hash differently), so such columns are not."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.api.types.infer_dtype(dtype.categories, skipna=True) in ("string", "empty")
    if dtype.kind == "O":
        return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
    return dtype.kind in "biufcmM" or isinstance(dtype, pd.DatetimeTZDtype)


def versions_digest(versions: Mapping[str, str]) -> str:
    """One hash of a window's per-partition versions: what a model was trained on, in one tag."""
    return content_hash(pd.DataFrame({"v": [json.dumps(dict(versions))]}))


def versions_by_day(frame: pd.DataFrame, timestamp: str) -> dict[str, str]:
    """The content hash of each day's rows, keyed by ISO day, oldest first."""
    if frame.empty:
        return {}
    days = frame[timestamp].dt.strftime("%Y-%m-%d")
    return content_hashes(frame, days, sorted(days.unique()))


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
    partition_of = pd.Series(np.asarray(keys, dtype=object)[position[inside]])
    return content_hashes(frame.loc[inside], partition_of, [keys[i] for i in np.unique(position[inside])])
