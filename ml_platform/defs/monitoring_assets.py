"""Monitoring of one model: `<model>/drift`, a day of live inputs and predictions against the champion's
training reference, with a warn check and a fail check whose thresholds come from the spec.

Live data is the prediction log's requests of that day (by the row's own event time when the request carries
the spec's timestamp field, else by arrival); a day without traffic falls back to the day's `features` scored
in batch, and says so.
"""

import base64
import io
import json
import sqlite3
from datetime import datetime

import dagster as dg
import pandas as pd

from ml_platform import settings
from ml_platform.defs.data_assets import IO_MANAGER_KEY
from ml_platform.defs.resources import MlflowTracking
from ml_platform.defs.serving_assets import scored_daily
from ml_platform.defs.training_assets import REFERENCE_PROFILE
from ml_platform.spec import ModelSpec

DRIFT_WARN, DRIFT_FAIL = "drift_warn", "drift_fail"


def logged_rows(log_path, timestamp: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The logged input rows whose event time falls in [start, end), each with the prediction returned, the
    version that answered, the route, and the other version scored beside it (shadow or canary), if any."""
    try:
        connection = sqlite3.connect(f"file:{log_path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return pd.DataFrame()
    try:
        requests = pd.read_sql_query("SELECT ts, features, outputs, version, shadow_version, shadow_outputs, "
                                     "routed FROM predictions", connection)
    except (sqlite3.OperationalError, pd.errors.DatabaseError):
        return pd.DataFrame()
    finally:
        connection.close()
    rows = []
    for ts, features, outputs, version, shadow_version, shadow_outputs, routed in requests.itertuples(index=False):
        arrived = datetime.fromtimestamp(ts)
        shadows = json.loads(shadow_outputs) if shadow_outputs else None
        for i, (row, output) in enumerate(zip(json.loads(features), json.loads(outputs))):
            event = pd.to_datetime(row.get(timestamp), errors="coerce") if timestamp in row else arrived
            if pd.isna(event):
                event = arrived
            if start <= event < end:
                rows.append({**row, "prediction": output if not isinstance(output, list) else None,
                             "_version": version, "_shadow_version": shadow_version,
                             "_shadow_prediction": shadows[i] if shadows else None, "_routed": routed})
    return pd.DataFrame(rows)


def _chart(table: pd.DataFrame, warn: float, fail: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.dropna(subset=["psi"]).head(20)[::-1]
    figure, axis = plt.subplots(figsize=(6, max(2.5, 0.25 * len(shown))))
    colors = ["#dc2626" if s == "fail" else "#f59e0b" if s == "warn" else "#16a34a" for s in shown["status"]]
    axis.barh(shown["feature"], shown["psi"], color=colors)
    axis.axvline(warn, color="#f59e0b", linestyle="--")
    axis.axvline(fail, color="#dc2626", linestyle="--")
    axis.set_title("PSI against the training reference")
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def build_monitoring_assets(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> list:
    name = spec.name
    key = dg.AssetKey([name, "drift"])
    thresholds = spec.monitoring.drift
    checks = [
        dg.AssetCheckSpec(DRIFT_WARN, asset=key, partitions_def=data,
                          description=f"No feature or prediction drifts past PSI {thresholds.warn} (warning)."),
        dg.AssetCheckSpec(DRIFT_FAIL, asset=key, partitions_def=data,
                          description=f"No feature or prediction drifts past PSI {thresholds.fail} (error)."),
    ]

    @dg.asset(key=key, group_name=name, owners=[spec.owner], kinds={"pandas", "parquet"}, partitions_def=data,
              io_manager_key=IO_MANAGER_KEY, check_specs=checks, tags={"ml_platform/model": name},
              description="Each feature's and the predictions' drift on the day against the champion's training "
                          "reference: PSI, KS, chi-square, missing-rate shift, unseen categories.",
              ins={"features": dg.AssetIn([name, "features"])},
              deps=[dg.AssetDep([name, "champion"], partition_mapping=dg.AllPartitionMapping())],
              automation_condition=scored_daily(dg.AssetKey([name, "champion"])))
    def drift(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, features: pd.DataFrame):
        import mlflow

        from ml_platform.core.drift import drift_table
        from ml_platform.serving.loader import RegistrySource

        version = mlflow_tracking.registry(name).version_of("champion")
        if version is None:
            raise dg.Failure(f"{name} has no champion yet: materialize {name}/champion first")
        run_id = mlflow_tracking.client().get_model_version(name, version).run_id
        profile = mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_PROFILE}")
        for kind in ("numeric", "categorical"):
            profile[kind] = {k: v for k, v in profile[kind].items() if k not in thresholds.ignore}
        window = context.partition_time_window
        start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
        live = logged_rows(settings.home() / "predictions" / f"{name}.sqlite", spec.timestamp, start, end)
        live = live.drop(columns=[c for c in live.columns if c.startswith("_")])
        source = "prediction log"
        if live.empty:
            source = "features (batch scored)"
            live = features.copy()
            if len(live) and spec.task != "multiclass":
                model = RegistrySource(name, mlflow_tracking.resolved_tracking_uri()).load(version).model
                live["prediction"] = model.predict(live)
        table = drift_table(live, profile, thresholds.warn, thresholds.fail)
        worst = table.dropna(subset=["psi"])
        flagged = {status: worst.loc[worst["status"] == status, "feature"].tolist() for status in ("warn", "fail")}
        summary = (f"{len(live)} rows from the {source}; PSI ≥ {thresholds.fail}: {flagged['fail'] or 'none'}; "
                   f"≥ {thresholds.warn}: {flagged['warn'] or 'none'}")
        metadata = {
            "rows": len(live), "live_source": source, "model_version": version,
            "max_psi": float(worst["psi"].max()) if len(worst) else 0.0,
            "prediction_psi": float(table.loc[table["feature"] == "prediction", "psi"].iloc[0])
            if (table["feature"] == "prediction").any() and table.loc[table["feature"] == "prediction", "psi"].notna().any()
            else 0.0,
            "top_drifted": dg.MetadataValue.json(worst.head(5)[["feature", "psi", "status"]].to_dict("records")),
            "features": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".4f")),
        }
        if len(worst):
            metadata["chart"] = dg.MetadataValue.md(f"![drift](data:image/png;base64,{_chart(table, thresholds.warn, thresholds.fail)})")
        yield dg.Output(table.assign(partition=context.partition_key, model_version=version), metadata=metadata)
        no_data = live.empty
        for check, status, severity in ((DRIFT_WARN, "warn", dg.AssetCheckSeverity.WARN),
                                        (DRIFT_FAIL, "fail", dg.AssetCheckSeverity.ERROR)):
            over = flagged["fail"] + (flagged["warn"] if status == "warn" else [])
            yield dg.AssetCheckResult(
                check_name=check, passed=not over, severity=severity,
                description=("no rows to compare on this day" if no_data else summary),
                metadata={"features_over_threshold": dg.MetadataValue.json(over), "rows": len(live),
                          "threshold": thresholds.warn if status == "warn" else thresholds.fail})

    return [drift, build_performance_asset(spec, data)]


PERFORMANCE_FLOOR = "performance_floor"


def build_performance_asset(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    """`<model>/performance`: the day's served predictions joined with their outcomes once labels arrive."""
    name = spec.name
    key = dg.AssetKey([name, "performance"])
    performance = spec.monitoring.performance

    @dg.asset(key=key, group_name=name, owners=[spec.owner], kinds={"pandas", "parquet"}, partitions_def=data,
              io_manager_key=IO_MANAGER_KEY, tags={"ml_platform/model": name},
              check_specs=[dg.AssetCheckSpec(PERFORMANCE_FLOOR, asset=key, partitions_def=data,
                                             description="Live metric on labelled predictions stays above "
                                                         "monitoring.performance.floor.")],
              description="Live task metrics of the day's served predictions, per answering (and shadowing) "
                          f"version, joined by `{spec.key}` with the outcomes in `{name}/features` (delayed "
                          "labels; a lag is expected and shown), and the champion against the version scored "
                          "beside it (a challenger in shadow or canary, or the previous champion) on the same "
                          "outcomes.",
              ins={"features": dg.AssetIn([name, "features"], metadata={"allow_missing_partitions": True})},
              deps=[dg.AssetDep([name, "endpoint"])],
              automation_condition=dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets([name, "endpoint"])))
    def performance_asset(context: dg.AssetExecutionContext, features: pd.DataFrame):
        from ml_platform.core.evaluation import DEFAULT_METRIC, HIGHER_IS_BETTER
        from ml_platform.core.performance import live_performance, paired_comparison

        window = context.partition_time_window
        start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
        served = logged_rows(settings.home() / "predictions" / f"{name}.sqlite", spec.timestamp, start, end)
        metric = performance.metric or DEFAULT_METRIC[spec.task]
        result = live_performance(served, features, spec.key, spec.target.name, spec.task, metric)
        status = result["status"]
        value = result["metrics"].get("answer", {}).get(metric)
        floor = performance.floor
        higher = metric in HIGHER_IS_BETTER
        passed = value is None or floor is None or (value >= floor if higher else value <= floor)
        paired = paired_comparison(served, features, spec.key, spec.target.name, spec.task, metric, higher)
        online = {}
        if len(paired):
            busiest = paired.sort_values("rows").iloc[-1]
            online = {
                "paired_comparison": dg.MetadataValue.json(paired.to_dict("records")),
                "champion_vs_other": dg.MetadataValue.md(paired.rename(columns={
                    "champion_value": f"champion {metric}", "other_value": f"other {metric}"})
                    .to_markdown(index=False, floatfmt=".4f")),
                "other_gain": float(busiest["gain"]) if busiest["gain"] is not None else float("nan")}
        yield dg.Output(result["table"].assign(partition=context.partition_key), metadata={
            "status": status, "served_rows": result["served"], "labelled_rows": result["labelled"],
            "label_coverage": result["coverage"], metric: value if value is not None else float("nan"),
            "answered_by_version": dg.MetadataValue.json(
                {str(r["version"]): {"rows": int(r["rows"]), metric: r[metric]}
                 for r in result["table"].to_dict("records") if r["role"] == "answer" and r[metric] == r[metric]}),
            "by_version": dg.MetadataValue.md(result["table"].to_markdown(index=False, floatfmt=".4f")
                                              if len(result["table"]) else "_no labelled predictions_"),
            **online})
        yield dg.AssetCheckResult(
            check_name=PERFORMANCE_FLOOR, passed=bool(passed),
            severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{status}: nothing to judge yet" if value is None else
                         f"live {metric} {value:.4f} vs floor {floor}"),
            metadata={"status": status, "labelled_rows": result["labelled"]})

    return performance_asset
