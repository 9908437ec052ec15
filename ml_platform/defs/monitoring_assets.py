"""Monitoring of one model, per day: `<model>/drift` (live inputs and predictions against the champion's
training reference, with a warn and a fail check) and `<model>/performance` (served predictions joined with
their delayed outcomes, with a floor check, and the champion against the version scored beside it).

Live data is the prediction log's requests of that day (by the row's own event time when the request carries
the spec's timestamp field, else by arrival); a day without traffic falls back, for drift, to the day's
`features` scored in batch, and says so. Features the log redacts (`serving.log.redact`, stored as keyed
hashes) are left out of drift on logged traffic, and the drift metadata says so.
"""

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform import settings
from ml_platform.core import mlflow_store
from ml_platform.core.metric_rules import meets
from ml_platform.core.mlflow_store import MODEL_FILES, REFERENCE_PROFILE
from ml_platform.defs import conventions
from ml_platform.defs.metadata import md_table
from ml_platform.defs.partitions import window_of
from ml_platform.defs.resources import DaskCluster, MlflowTracking, engine_step
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:  # the steps import pandas, the drift and performance code (SciPy) when they run
    import pandas as pd

    from ml_platform.core.drift import DayDrift
    from ml_platform.core.labels import Labels
    from ml_platform.core.performance import LivePerformance

DRIFT_WARN, DRIFT_FAIL = "drift_warn", "drift_fail"
PERFORMANCE_FLOOR = "performance_floor"


def build_monitoring(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.Definitions:
    return dg.Definitions(assets=[drift_asset(spec, data), performance_asset(spec, data)])


def _served(spec: ModelSpec, context: dg.AssetExecutionContext) -> "pd.DataFrame":
    """The day's logged requests, one row per scored input."""
    from ml_platform.serving.prediction_log import log_path, logged_rows

    return logged_rows(log_path(settings.home(), spec.name), spec.timestamp, *window_of(context))


def drift_asset(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    key, thresholds = conventions.key(spec, "drift"), spec.monitoring.drift
    checks = [
        dg.AssetCheckSpec(
            DRIFT_WARN,
            asset=key,
            partitions_def=data,
            description=f"No feature or prediction drifts past PSI {thresholds.warn} (warning).",
        ),
        dg.AssetCheckSpec(
            DRIFT_FAIL,
            asset=key,
            partitions_def=data,
            description=f"No feature or prediction drifts past PSI {thresholds.fail} (error).",
        ),
    ]

    @conventions.asset(
        spec,
        "drift",
        partitions_def=data,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={"pandas", "parquet"},
        check_specs=checks,
        description="Each feature's and the predictions' drift on the day against the champion's training "
        "reference: PSI, KS, chi-square, missing-rate shift, unseen categories.",
        ins={"features": dg.AssetIn(conventions.key(spec, "features"), metadata=conventions.frame_input(spec))},
        deps=[dg.AssetDep(conventions.key(spec, "champion"), partition_mapping=dg.AllPartitionMapping())],
        automation_condition=conventions.daily_once_a_champion_exists(conventions.key(spec, "champion")),
    )
    def drift(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, dask_cluster: DaskCluster, features):
        from ml_platform.core.drift import day_drift, without

        version, run_id = mlflow_tracking.champion_run(spec.name)
        reference = mlflow_tracking.run_artifact(run_id, REFERENCE_PROFILE)
        live, left_out = _with_predicted_class(_served(spec, context), reference)
        live, source = live.drop(columns=[c for c in live.columns if c.startswith("_")]), "prediction log"
        # The log stores redacted features as keyed hashes: never compared with training values.
        redacted = [name for name in spec.serving.log.redact if name not in thresholds.ignore]
        if live.empty:
            live, source, redacted = _batch_scored(spec, features, mlflow_tracking, dask_cluster, run_id)
        profile = without(reference, [*thresholds.ignore, *redacted])
        report = day_drift(live, profile, thresholds.warn, thresholds.fail, source)
        metadata = _drift_metadata(report, version, redacted)
        if left_out:
            metadata["prediction_vectors_left_out"] = left_out
        yield dg.Output(report.table.assign(partition=context.partition_key, model_version=version), metadata=metadata)
        for check, level, severity in (
            (DRIFT_WARN, "warn", dg.AssetCheckSeverity.WARN),
            (DRIFT_FAIL, "fail", dg.AssetCheckSeverity.ERROR),
        ):
            over = report.over(level)
            yield dg.AssetCheckResult(
                check_name=check,
                passed=not over,
                severity=severity,
                description="no rows to compare on this day" if live.empty else report.summary(),
                metadata={
                    "features_over_threshold": dg.MetadataValue.json(over),
                    "rows": report.rows,
                    "threshold": thresholds.warn if level == "warn" else thresholds.fail,
                },
            )

    return drift


def _with_predicted_class(live: "pd.DataFrame", reference: dict) -> "tuple[pd.DataFrame, int]":
    """A multiclass log's `prediction`: the class of each row's largest logged probability, under the
    reference's `prediction_classes` (a reference without them does not compare predictions). Returns the rows
    and how many vectors were not of the reference's length (left out of the predicted classes)."""
    from ml_platform.core.drift import predicted_class

    classes = reference.get("prediction_classes")
    if not classes or "_probabilities" not in live.columns:
        return live, 0
    names, wrong = predicted_class(live["_probabilities"], classes)
    return live.assign(prediction=names), wrong


def _batch_scored(
    spec: ModelSpec, features, mlflow_tracking: MlflowTracking, dask_cluster: DaskCluster, run_id: str
) -> "tuple[pd.DataFrame, str, list]":
    """Drift's live rows on a day without traffic: the day's features scored in batch by the model's engine (on
    the Dask workers for a Dask spec)."""
    with engine_step(spec, dask_cluster, features) as (engine, _):
        live = engine.with_predictions(spec, features, lambda: mlflow_tracking.load_run_model(run_id))
    return live, "features (batch scored on the Dask workers)" if engine.on_cluster else "features (batch scored)", []


def _drift_metadata(report: "DayDrift", version: str, redacted: list[str]) -> dict:
    from ml_platform.core.drift import psi_chart

    metadata = {
        "rows": report.rows,
        "live_source": report.source,
        "model_version": version,
        "max_psi": report.max_psi,
        "prediction_psi": report.prediction_psi,
        "top_drifted": dg.MetadataValue.json(report.scored.head(5)[["feature", "psi", "status"]].to_dict("records")),
        "features": md_table(report.table),
    }
    if redacted:
        metadata["not_compared_redacted"] = dg.MetadataValue.md(
            f"{', '.join(f'`{name}`' for name in redacted)}: redacted in the prediction log (serving.log.redact: "
            "stored as keyed hashes), so not compared with the training reference"
        )
    if len(report.scored):
        metadata["chart"] = dg.MetadataValue.md(
            f"![drift](data:image/png;base64,{psi_chart(report.table, report.warn, report.fail)})"
        )
    return metadata


def performance_asset(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """`<model>/performance`: the day's served predictions joined with their outcomes once labels arrive."""
    key, settings_ = conventions.key(spec, "performance"), spec.monitoring.performance
    metric = spec.live_metric
    endpoint = conventions.key(spec, "endpoint")

    @conventions.asset(
        spec,
        "performance",
        partitions_def=data,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={"pandas", "parquet"},
        check_specs=[
            dg.AssetCheckSpec(
                PERFORMANCE_FLOOR,
                asset=key,
                partitions_def=data,
                description="Live metric on labelled predictions stays above monitoring.performance.floor.",
            )
        ],
        description="Live task metrics of the day's served predictions, per answering (and shadowing) "
        f"version, joined by `{spec.key}` with the outcomes in `{spec.name}/features` (delayed "
        "labels; a lag is expected and shown), and the champion against the version scored "
        "beside it (a challenger in shadow or canary, or the previous champion) on the same "
        "outcomes.",
        ins={"features": dg.AssetIn(conventions.key(spec, "features"), metadata={"allow_missing_partitions": True})},
        deps=[dg.AssetDep(endpoint)],
        automation_condition=conventions.when_labels_arrive(endpoint),
    )
    def performance(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, features):  # a DataFrame
        from ml_platform.core.performance import live_performance, paired_comparison

        served = _served(spec, context)
        labels_of = _labels_of(spec.name, mlflow_tracking) if spec.task != "regression" and len(served) else None
        result = live_performance(served, features, spec.key, spec.target.name, spec.task, metric, labels_of)
        paired = paired_comparison(served, features, spec.key, spec.target.name, spec.task, metric, labels_of)
        value, floor = result.answer_value(metric), settings_.floor
        yield dg.Output(
            result.table.assign(partition=context.partition_key),
            metadata={**_performance_metadata(result, metric, value), **_online_metadata(paired, metric)},
        )
        yield dg.AssetCheckResult(
            check_name=PERFORMANCE_FLOOR,
            passed=bool(value is None or floor is None or meets(metric, value, floor)),
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{result.status}: nothing to judge yet"
                if value is None
                else f"live {metric} {value:.4f} vs floor {floor}"
            ),
            metadata={"status": result.status, "labelled_rows": result.labelled},
        )

    return performance


def _labels_of(name: str, mlflow_tracking: MlflowTracking) -> "Callable[[str], Labels | None]":
    """A version's labels, from its manifest (read once per version); the champion's for a version the registry
    does not know."""
    from mlflow.exceptions import MlflowException

    from ml_platform.core.labels import Labels
    from ml_platform.core.model import MANIFEST_FILE

    client = mlflow_tracking.client()

    @functools.cache
    def manifest_labels(version: str | None) -> Labels | None:
        try:
            run_id = mlflow_store.run_of(client, name, version) if version is not None else None
        except MlflowException:  # not a registered version
            return None
        return (
            Labels.of_manifest(mlflow_tracking.run_artifact(run_id, f"{MODEL_FILES}/{MANIFEST_FILE}"))
            if run_id
            else None
        )

    @functools.cache
    def labels_of(version: str) -> Labels | None:
        return manifest_labels(version) or manifest_labels(
            mlflow_store.version_of_alias(client, name, mlflow_store.CHAMPION)
        )

    return labels_of


def _performance_metadata(result: "LivePerformance", metric: str, value: float | None) -> dict:
    table = result.table
    return {
        "status": result.status,
        "served_rows": result.served,
        "labelled_rows": result.labelled,
        "label_coverage": result.coverage,
        metric: value if value is not None else float("nan"),
        "unseen_labels": dg.MetadataValue.json(dict(result.unseen_labels)),
        "answered_by_version": dg.MetadataValue.json(
            {
                str(r["version"]): {"rows": int(r["rows"]), metric: r[metric]}
                for r in table.to_dict("records")
                if r["role"] == "answer" and r[metric] == r[metric]
            }
        ),
        "by_version": md_table(table) if len(table) else dg.MetadataValue.md("_no labelled predictions_"),
    }


def _online_metadata(paired: "pd.DataFrame", metric: str) -> dict:
    """The champion against the version scored beside it, per pair; `other_gain` is what the UI charts."""
    if not len(paired):
        return {}
    busiest = paired.sort_values("rows").iloc[-1]
    return {
        "paired_comparison": dg.MetadataValue.json(paired.to_dict("records")),
        "champion_vs_other": md_table(
            paired.rename(columns={"champion_value": f"champion {metric}", "other_value": f"other {metric}"})
        ),
        "other_gain": float(busiest["gain"]) if busiest["gain"] is not None else float("nan"),
    }
