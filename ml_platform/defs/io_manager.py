"""Stores each partition of a DataFrame asset as one Parquet file under a UPath base (local, s3://, gs://).

Layout: `<base>/<model>/<stage>/<partition key>.parquet`. Loading reads only the partitions asked for. A
write goes to a temporary name first and is renamed into place once every partition of the step is written,
so a failed or killed step leaves no half-written file behind. Several partitions load as one frame; a
categorical column stays categorical across them, under the union of their levels (`concat_partitions`).

An input loads as the frame of the engine its metadata names (`core.engine.ENGINE_KEY`, written from the
model's engine; none names the local engine): a pandas frame, or with `training.engine: dask` a lazy Dask
DataFrame over the stored files (`StoredPartitions`: nothing is read in the step's process). An output of Dask
DataFrames (`DaskEngine.parts_of`) is written by the workers as a folder of part files,
`<partition key>.parquet/part-00000.parquet`, ... (staged under a temporary name and renamed into place like a
file).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.core.engine import ENGINE_KEY, DaskEngine, LocalEngine, engine_named
from ml_platform.core.phases import PhaseTimes

if TYPE_CHECKING:  # pandas, UPath (fsspec) and the Dask helpers are imported by the steps that store or load
    import pandas as pd
    from upath import UPath


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Parquet per partition; a step's output is a DataFrame (one partition) or {partition key: DataFrame}."""

    base_path: str

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None) -> UPath:
        from upath import UPath

        folder = UPath(self.base_path).joinpath(*asset_key.path)
        return folder / f"{partition_key or '__all__'}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Mapping[str, pd.DataFrame]) -> None:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        dask_parts = DaskEngine.parts_of(obj, keys)
        if dask_parts is not None:  # Dask DataFrames: the workers write them
            return self._write_dask(context, keys, dask_parts)
        parts: dict[str | None, pd.DataFrame]
        if isinstance(obj, Mapping):
            parts = {key: frame for key, frame in obj.items()}  # noqa: C416 - typed for keys that may be None
            missing = [k for k in keys if k not in parts]
            if missing:
                raise dg.Failure(f"output for {context.asset_key.to_user_string()} lacks partitions {missing[:5]}")
        elif len(keys) == 1:
            parts = {keys[0]: obj}
        else:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: a run over {len(keys)} partitions must "
                "return {partition key: DataFrame}"
            )
        staged: list[tuple[UPath, UPath]] = []
        token = uuid.uuid4().hex[:8]
        writing = PhaseTimes()
        try:
            with writing.phase("parquet_write"):
                self._path(context.asset_key, keys[0]).parent.mkdir(parents=True, exist_ok=True)
                for key in keys:
                    final = self._path(context.asset_key, key)
                    temporary = final.with_name(f".{final.name}.{token}.tmp")
                    staged.append((temporary, final))
                    LocalEngine.store(parts[key], temporary)
                for temporary, final in staged:
                    if final.is_dir():  # stored by the Dask engine before: a file replaces the folder
                        _remove(final)
                    temporary.rename(final)
        except BaseException:
            for temporary, _ in staged:
                if temporary.exists():
                    temporary.unlink()
            raise
        rows = sum(len(parts[k]) for k in keys)
        folder = self._path(context.asset_key, keys[0]).parent
        context.add_output_metadata(
            {
                "storage": dg.MetadataValue.path(str(folder)),
                "stored_rows": rows,
                "write_seconds": dg.MetadataValue.json(writing.rounded()["parquet_write"]),
            }
        )

    def _write_dask(self, context: dg.OutputContext, keys: list, parts: dict) -> None:
        """Each partition's Dask DataFrame as a folder of part files, staged and renamed into place."""

        if sorted(parts, key=str) != sorted(keys, key=str):
            raise dg.Failure(
                f"output for {context.asset_key.to_user_string()} has partitions {sorted(parts)[:5]}, "
                f"the run has {keys[:5]}"
            )
        rows = 0
        for key, frame in parts.items():
            final = self._path(context.asset_key, key)
            final.parent.mkdir(parents=True, exist_ok=True)
            token = uuid.uuid4().hex[:8]
            staged, old = final.with_name(f".{final.name}.{token}.tmp"), final.with_name(f".{final.name}.{token}.old")
            try:
                rows += DaskEngine.store(frame, staged)
                if final.exists():
                    final.rename(old)
                staged.rename(final)
            except BaseException:
                _remove(staged)
                raise
            finally:
                _remove(old)
        folder = self._path(context.asset_key, keys[0]).parent
        context.add_output_metadata({"storage": dg.MetadataValue.path(str(folder)), "stored_rows": rows})

    def load_input(self, context: dg.InputContext):
        asset_key = context.asset_key
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        metadata = context.definition_metadata or {}
        allow_missing = bool(metadata.get("allow_missing_partitions"))
        paths, found = [], []
        for key in keys:
            path = self._path(asset_key, key)
            if not path.exists() and allow_missing:
                continue  # the consumer checks coverage and says which partitions are missing
            if not path.exists():
                raise dg.Failure(
                    f"{asset_key.to_user_string()} has no stored partition {key!r} "
                    f"(expected {path}); materialize it first"
                )
            paths.append(path)
            found.append(key)
        return engine_named(metadata.get(ENGINE_KEY, LocalEngine.name)).load(paths, found)


def _remove(path: UPath) -> None:
    """A staged or replaced partition, file or folder, if it is there."""
    if path.is_dir():
        path.fs.rm(path.path, recursive=True)
    elif path.exists():
        path.unlink()
