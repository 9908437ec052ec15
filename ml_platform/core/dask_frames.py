"""Stored partitions as Dask DataFrames, for `training.engine: dask`: read where they are stored (one Dask
partition per stored file, any fsspec location), written back by the workers, and summarised partition by
partition on the workers, so the step's process only ever holds small per-partition results.

A partition stored by the Dask engine is a folder of part files (`<key>.parquet/part-00000.parquet`, ...); one
stored by the local engine is a single file. Both read the same way with either engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from upath import UPath

if TYPE_CHECKING:
    import dask.dataframe as dd

PART_PREFIX = "part-"


@dataclass
class StoredPartitions:
    """A Dask DataFrame over stored partition files, with each file's estimated size in memory (from the
    Parquet footers), so a step can check its workers can hold one before computing anything."""

    frame: Any  # dask.dataframe.DataFrame (None: no partition is stored)
    files: list[str]
    sizes: dict[str, int] = field(default_factory=dict)
    keys: list[str | None] = field(default_factory=list)  # the partition key of each Dask partition

    def of_key(self, frame: dd.DataFrame, key: str | None) -> dd.DataFrame:
        """The Dask partitions of `frame` (this frame, or one computed from it partition by partition) that
        came from the stored partition `key`."""
        partitions: dd.DataFrame = frame.partitions[[i for i, k in enumerate(self.keys) if k == key]]
        return partitions


def partition_files(path: UPath) -> list[UPath]:
    """The Parquet files of one stored partition: the file itself, or a Dask-written folder's parts in order."""
    if path.is_dir():
        return sorted((p for p in path.iterdir() if p.name.startswith(PART_PREFIX)), key=lambda p: p.name)
    return [path]


def read_file(path: str | UPath) -> pd.DataFrame:
    with (path if isinstance(path, UPath) else UPath(path)).open("rb") as handle:
        return pd.read_parquet(handle)


def in_memory_bytes(path: UPath) -> int:
    """The uncompressed size of a Parquet file's data (its footer's row groups): what it takes in memory."""
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        metadata = pq.ParquetFile(handle).metadata
    return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))


def read_partitions(paths: Iterable[UPath], keys: Iterable[str | None] | None = None) -> StoredPartitions:
    """A lazy Dask DataFrame over the stored partitions (`keys`: their partition keys), oldest first: nothing
    is read here but the footers."""
    import dask
    import dask.dataframe as dd
    import pyarrow.parquet as pq
    from dask.dataframe.utils import clear_known_categories

    paths = list(paths)
    keys = list(keys) if keys is not None else [None] * len(paths)
    found = [(f, key) for path, key in zip(paths, keys, strict=True) for f in partition_files(path)]
    files = [f for f, _ in found]
    if not files:
        raise FileNotFoundError("no stored partitions to read")
    with files[0].open("rb") as handle:
        meta = clear_known_categories(pq.read_schema(handle).empty_table().to_pandas())
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_map(read_file, files, meta=meta, enforce_metadata=False, label="read-partition")
    return StoredPartitions(
        frame, [str(f) for f in files], {str(f): in_memory_bytes(f) for f in files}, [key for _, key in found]
    )


def write_part(part: pd.DataFrame, path: UPath) -> int:
    with path.open("wb") as handle:
        part.to_parquet(handle, index=False)
    return len(part)


def write_partitions(frame: dd.DataFrame, folder: UPath) -> int:
    """Each Dask partition of `frame` as one part file under `folder`, written by the workers; the row count."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = per_partition(
        frame, write_part, paths=[folder / f"{PART_PREFIX}{i:05d}.parquet" for i in range(frame.npartitions)]
    )
    return int(sum(counts))


def per_partition(
    frame: dd.DataFrame, function: Callable[..., Any], *args: Any, paths: list[UPath] | None = None
) -> list[Any]:
    """`function(partition, *args)` on every partition, on the workers (the i-th call also gets `paths[i]`);
    the results in partition order. Only what the function returns comes back to this process."""
    import dask

    parts = frame.to_delayed()
    shared = [dask.delayed(arg, traverse=False) for arg in args]  # sent to the cluster once, not once per call
    calls = [dask.delayed(function)(part, *([paths[i]] if paths else []), *shared) for i, part in enumerate(parts)]
    return list(dask.compute(*calls))


def sample(frame: dd.DataFrame, rows: int, total: int, seed: int) -> pd.DataFrame:
    """A uniform sample of about `rows` rows (every partition sampled at the same rate), in partition order."""
    fraction = min(1.0, rows / max(total, 1))
    if fraction >= 1.0:
        parts = per_partition(frame, _identity)
    else:
        parts = per_partition(frame, _sample_part, fraction, seed)
    parts = [p for p in parts if len(p)] or parts[:1]
    from ml_platform.core.features import concat_partitions

    return concat_partitions(parts).reset_index(drop=True)


def _identity(part: pd.DataFrame) -> pd.DataFrame:
    return part


def _sample_part(part: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    return part.sample(frac=fraction, random_state=seed) if len(part) else part
