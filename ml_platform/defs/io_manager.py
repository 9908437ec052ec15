"""Stores each partition of a DataFrame asset as one Parquet file under a UPath base (local, s3://, gs://).

Layout: `<base>/<model>/<stage>/<partition key>.parquet`. Loading reads only the partitions asked for. A
write goes to a temporary name first and is renamed into place once every partition of the step is written,
so a failed or killed step leaves no half-written file behind. Several partitions load as one frame; a
categorical column stays categorical across them, under the union of their levels (`concat_partitions`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import dagster as dg
import pandas as pd
from upath import UPath

from ml_platform.core.features import concat_partitions


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Parquet per partition; a step's output is a DataFrame (one partition) or {partition key: DataFrame}."""

    base_path: str

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None) -> UPath:
        folder = UPath(self.base_path).joinpath(*asset_key.path)
        return folder / f"{partition_key or '__all__'}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Mapping[str, pd.DataFrame]) -> None:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        if isinstance(obj, Mapping):
            parts = dict(obj)
            missing = [k for k in keys if k not in parts]
            if missing:
                raise dg.Failure(f"output for {context.asset_key.to_user_string()} lacks partitions {missing[:5]}")
        elif len(keys) == 1:
            parts = {keys[0]: obj}
        else:
            raise dg.Failure(f"{context.asset_key.to_user_string()}: a run over {len(keys)} partitions must "
                             "return {partition key: DataFrame}")
        staged: list[tuple[UPath, UPath]] = []
        token = uuid.uuid4().hex[:8]
        try:
            for key in keys:
                final = self._path(context.asset_key, key)
                final.parent.mkdir(parents=True, exist_ok=True)
                temporary = final.with_name(f".{final.name}.{token}.tmp")
                staged.append((temporary, final))
                with temporary.open("wb") as handle:
                    parts[key].to_parquet(handle, index=False)
            for temporary, final in staged:
                temporary.rename(final)
        except BaseException:
            for temporary, _ in staged:
                if temporary.exists():
                    temporary.unlink()
            raise
        rows = sum(len(parts[k]) for k in keys)
        folder = self._path(context.asset_key, keys[0]).parent
        context.add_output_metadata({"storage": dg.MetadataValue.path(str(folder)),
                                     "stored_rows": rows})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset_key = context.asset_key
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        frames = []
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        for key in keys:
            path = self._path(asset_key, key)
            if not path.exists() and allow_missing:
                continue  # the consumer checks coverage and says which partitions are missing
            if not path.exists():
                raise dg.Failure(f"{asset_key.to_user_string()} has no stored partition {key!r} "
                                 f"(expected {path}); materialize it first")
            with path.open("rb") as handle:
                frames.append(pd.read_parquet(handle))
        if not frames:
            return pd.DataFrame()
        return concat_partitions(frames)
