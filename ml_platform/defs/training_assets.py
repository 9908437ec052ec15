"""The training layer of one model: training_set → model → evaluation (gates) → champion.

All four share the retraining partitions (weekly for flight_delay): partition W trains on the `window_days`
days of features that end with W's last day. The model step owns one MLflow run; evaluation resumes it to add
holdout metrics, plots and the model card; champion moves registry aliases only when every gate passed.
"""

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ml_platform.defs.data_assets import IO_MANAGER_KEY, content_hash
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import ModelSpec

SPLIT = "__split__"
MODEL_FILES = "model_files"
SMOKE_ROWS = "smoke_rows.json"
REFERENCE_PROFILE = "reference_profile.json"


def training_reference(model, train: pd.DataFrame) -> dict:
    """The drift reference of a model version: its training rows' features and its predictions on them."""
    from ml_platform.core.drift import reference_profile

    frame = train[model.encoder.names].copy()
    numeric = list(model.encoder.numeric)
    if model.task != "multiclass":
        frame["prediction"] = model.predict(train)
        numeric.append("prediction")
    return reference_profile(frame, numeric, list(model.encoder.categorical))


def smoke_rows(model, test: pd.DataFrame, count: int = 50) -> list[dict]:
    """A fixed sample of held-out rows (features only, JSON-safe) that every deployment must score exactly."""
    sample = test.sample(min(count, len(test)), random_state=0)[model.encoder.names]
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in sample.to_dict(orient="records")]


def training_partitions(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.TimeWindowPartitionsDefinition:
    """Retraining partitions whose first window starts on the first day of data."""
    first_data_day = data.start.date()
    end = data.end.date() if data.end else None
    if spec.training.cadence == "weekly":
        start = first_data_day + timedelta(days=spec.training.window_days - 7)
        return dg.WeeklyPartitionsDefinition(start_date=start.isoformat(), day_offset=start.isoweekday() % 7,
                                             end_date=end.isoformat() if end else None)
    start = first_data_day + timedelta(days=spec.training.window_days - 1)
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_date=end.isoformat() if end else None)


def window_mapping(spec: ModelSpec) -> dg.TimeWindowPartitionMapping:
    """Training partition → the daily feature partitions of its window (the offset counts training periods)."""
    periods = spec.training.window_days // 7 if spec.training.cadence == "weekly" else spec.training.window_days
    return dg.TimeWindowPartitionMapping(start_offset=-(periods - 1))


def _model_ref(row: pd.DataFrame) -> dict:
    return row.iloc[0].to_dict()


def _md_table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".4f") if len(frame) else "_none_")


def build_training_assets(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> list:
    """Assets, checks and jobs of the training layer for one spec."""
    from ml_platform.core.gates import GATE_NAMES

    name = spec.name
    keys = {stage: dg.AssetKey([name, stage]) for stage in ("features", "training_set", "model", "evaluation",
                                                             "champion")}
    partitions = training_partitions(spec, data)
    common = dict(group_name=name, owners=[spec.owner], partitions_def=partitions, io_manager_key=IO_MANAGER_KEY,
                  code_version=spec.digest, tags={"ml_platform/model": name})
    freshness = spec.monitoring.model_freshness

    @dg.asset(key=keys["training_set"], kinds={"pandas", "parquet"},
              description=f"The last {spec.training.window_days} days of features as of each retraining "
                          f"partition, split by time: train, validation ({spec.training.validation_days} days, "
                          f"early stopping), test ({spec.training.test_days} newest days, held out).",
              ins={"features": dg.AssetIn(keys["features"], partition_mapping=window_mapping(spec),
                                          metadata={"allow_missing_partitions": True})}, **common)
    def training_set(context: dg.AssetExecutionContext, features: pd.DataFrame):
        from ml_platform.core.training import TrainingError, split_by_time

        wanted = list(context.asset_partition_keys_for_input("features"))
        present = set(features[spec.timestamp].dt.strftime("%Y-%m-%d")) if len(features) else set()
        missing = [day for day in wanted if day not in present]
        if missing:
            raise dg.Failure(
                f"partition {context.partition_key}: training.window_days: the {spec.training.window_days}-day "
                f"window {wanted[0]} → {wanted[-1]} has features for {len(wanted) - len(missing)} of "
                f"{len(wanted)} days; missing: {', '.join(missing[:7])}{' …' if len(missing) > 7 else ''}. "
                f"Materialize {name}/features for them (or shorten training.window_days in {spec.path}).")
        try:
            split = split_by_time(features, spec)
        except TrainingError as error:
            raise dg.Failure(f"partition {context.partition_key}: {error}") from None
        days = features[spec.timestamp].dt.strftime("%Y-%m-%d")
        versions = {day: content_hash(part.reset_index(drop=True))
                    for day, part in features.groupby(days, sort=True)}
        frame = pd.concat([split.train.assign(**{SPLIT: "train"}), split.valid.assign(**{SPLIT: "valid"}),
                           split.test.assign(**{SPLIT: "test"})], ignore_index=True)
        summary = split.summary(spec.timestamp, spec.target.name, spec.task)
        window = f"{min(versions)} → {max(versions)}" if versions else "empty"
        return dg.Output(frame, metadata={
            "rows": len(frame), **{f"rows_{k}": v["rows"] for k, v in summary.items()},
            "window": window, "splits": dg.MetadataValue.json(summary),
            "upstream_data_versions": dg.MetadataValue.json(versions),
            "upstream_partitions": len(versions)})

    @dg.asset(key=keys["model"], kinds={"lightgbm", "mlflow"},
              description=f"LightGBM ({spec.task}) trained on the training split with early stopping; logged to "
                          f"MLflow and registered as a new version of `{name}` with alias `challenger`.",
              ins={"training_set": dg.AssetIn(keys["training_set"])},
              freshness_policy=(dg.FreshnessPolicy.time_window(fail_window=freshness.fail_after,
                                                               warn_window=freshness.warn_after)
                                if freshness else None), **common)
    def model(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, training_set: pd.DataFrame):
        import mlflow

        from ml_platform.core import evaluation as ev
        from ml_platform.core.pyfunc_model import ARTIFACT
        from ml_platform.core.training import Split, TrainingError, train, tune

        split = Split(*(training_set[training_set[SPLIT] == part].drop(columns=SPLIT).reset_index(drop=True)
                        for part in ("train", "valid", "test")))
        metric = spec.gates.metric or ev.DEFAULT_METRIC[spec.task]
        data_versions = json.dumps(
            {d: content_hash(p.reset_index(drop=True)) for d, p in training_set.drop(columns=SPLIT).groupby(
                training_set[spec.timestamp].dt.strftime("%Y-%m-%d"), sort=True)})
        with mlflow_tracking.start_run(context, name, tags={"spec_digest": spec.digest,
                                                            "code_version": spec.digest}) as run:
            trials: list[dict] = []
            override = None
            try:
                if spec.training.tuning.trials:
                    override, trials = tune(spec, split, lambda m, frame: ev.score(m, frame, metric))
                result = train(spec, split, override, extra_manifest={"partition": context.partition_key})
            except TrainingError as error:
                raise dg.Failure(f"partition {context.partition_key}: {error}") from None
            valid = {k.removeprefix("valid_"): v for k, v in result.model.manifest["metrics"].items()}
            result.model.manifest["data_versions"] = json.loads(data_versions)
            mlflow.log_params({k: v for k, v in result.params.items() if k != "metric"})
            mlflow.log_params({"window_days": spec.training.window_days, "partition": context.partition_key,
                               "best_iteration": result.best_iteration})
            _log_learning_curve(result.learning_curve)
            mlflow.log_metrics({f"valid_{k}": v for k, v in valid.items()})
            mlflow.set_tags({"data_versions_digest": content_hash(pd.DataFrame({"v": [data_versions]})),
                             "window": f"{split.train[spec.timestamp].min().date()} → "
                                       f"{split.test[spec.timestamp].max().date()}"})
            mlflow.log_dict(json.loads(data_versions), "data_versions.json")
            if trials:
                mlflow.log_dict({"trials": trials}, "tuning_trials.json")
            with tempfile.TemporaryDirectory() as scratch:
                folder = result.model.save(Path(scratch) / MODEL_FILES)
                mlflow.log_artifacts(str(folder), MODEL_FILES)
                model_bytes = (folder / "model.txt").read_bytes()
                logged = mlflow.pyfunc.log_model(
                    name="model", python_model=str(Path(__file__).parents[1] / "core" / "pyfunc_model.py"),
                    artifacts={ARTIFACT: str(folder)}, pip_requirements=[], input_example=None)
            version = mlflow_tracking.registry(name).register(
                logged.model_uri, run.info.run_id, description=spec.description,
                tags={"dagster_run_id": context.run_id, "partition": context.partition_key,
                      "spec_digest": spec.digest, f"valid_{metric}": round(valid.get(metric, float('nan')), 6)})
        import hashlib

        ref = pd.DataFrame([{"model": name, "version": version, "run_id": run.info.run_id,
                             "experiment_id": run.info.experiment_id, "model_uri": logged.model_uri,
                             "partition": context.partition_key, "spec_digest": spec.digest,
                             "best_iteration": result.best_iteration,
                             "model_sha256": hashlib.sha256(model_bytes).hexdigest()}])
        url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
        return dg.Output(ref, metadata={
            "registered_version": version, "mlflow_run_id": run.info.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_tracking_uri": mlflow_tracking.resolved_tracking_uri(),
            "best_iteration": result.best_iteration, "train_seconds": round(result.seconds, 2),
            **{f"valid_{k}": v for k, v in valid.items()},
            "model_sha256": ref.loc[0, "model_sha256"],
            **({"tuning_best_trials": dg.MetadataValue.json(trials[:5])} if trials else {}),
        })

    gate_specs = [dg.AssetCheckSpec(gate, asset=keys["evaluation"], blocking=True, partitions_def=partitions,
                                    description=_GATE_DESCRIPTIONS[gate]) for gate in GATE_NAMES]

    @dg.asset(key=keys["evaluation"], kinds={"mlflow", "pandas"}, check_specs=gate_specs,
              description="The new model on the held-out newest days: task metrics, a naive baseline, slices, "
                          "fairness, TreeSHAP attributions, the current champion on the same rows, and the model "
                          "card. The promotion gates are its blocking checks.",
              ins={"model": dg.AssetIn(keys["model"]), "training_set": dg.AssetIn(keys["training_set"])},
              **common)
    def evaluation(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, model: pd.DataFrame,
                   training_set: pd.DataFrame):
        import mlflow

        from ml_platform.core import evaluation as ev
        from ml_platform.core.gates import run_gates
        from ml_platform.core.model_card import model_card

        ref = _model_ref(model)
        registry = mlflow_tracking.registry(name)
        candidate = _load(mlflow_tracking, ref["run_id"])
        champion_version = registry.version_of("champion")
        champion = None
        if champion_version and champion_version != str(ref["version"]):
            champion_run = mlflow_tracking.client().get_model_version(name, champion_version).run_id
            champion = _load(mlflow_tracking, champion_run)
        train = training_set[training_set[SPLIT] == "train"]
        test = training_set[training_set[SPLIT] == "test"].reset_index(drop=True)
        metric = spec.gates.metric or ev.DEFAULT_METRIC[spec.task]
        result = ev.evaluate(candidate, train, test, metric, spec.gates.slices,
                             spec.gates.fairness.group if spec.gates.fairness else None, champion)
        gates = run_gates(result, spec.gates)
        summary = training_set.groupby(SPLIT)[spec.timestamp].agg(["min", "max", "count"])
        card = model_card(spec, str(ref["version"]), result, gates, {
            "window": f"{training_set[spec.timestamp].min().date()} → {training_set[spec.timestamp].max().date()}",
            "splits": {k: {"rows": int(r["count"]), "first_day": str(r["min"].date()), "last_day": str(r["max"].date())}
                       for k, r in summary.iterrows()},
            "data_versions": candidate.manifest.get("data_versions", {})})
        with mlflow_tracking.start_run(context, name, run_id=ref["run_id"]):
            mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items()})
            mlflow.log_metrics({f"baseline_{k}": v for k, v in result.baseline.items()})
            if result.champion:
                mlflow.log_metrics({f"champion_{k}": v for k, v in result.champion.items()})
            if result.fairness:
                mlflow.log_metric("fairness_gap", result.fairness["gap"])
            mlflow.log_text(card, "model_card.md")
            mlflow.log_dict({"gates": [g.as_dict() for g in gates]}, "gates.json")
            mlflow.log_dict(result.attributions.to_dict(), "feature_attributions.json")
            mlflow.log_text(result.slices.to_csv(index=False), "slices.csv")
            mlflow.log_dict({"rows": smoke_rows(candidate, test)}, SMOKE_ROWS)
            mlflow.log_dict(training_reference(candidate, train), REFERENCE_PROFILE)
            for plot, png in result.plots.items():
                mlflow.log_image(_image(png), f"plots/{plot}.png")
            mlflow.set_tags({f"gate.{g.name}": "passed" if g.passed else "failed" for g in gates})
        registry.mark_gates(str(ref["version"]), all(g.passed for g in gates))
        row = pd.DataFrame([{**ref, "metric": metric, "value": result.value,
                             "champion_version": champion_version,
                             "champion_value": (result.champion or {}).get(metric),
                             "gates": json.dumps([g.as_dict() for g in gates]),
                             "all_gates_passed": all(g.passed for g in gates)}])
        yield dg.Output(row, metadata={
            metric: result.value, **{f"test_{k}": v for k, v in result.metrics.items()},
            **{f"baseline_{k}": v for k, v in result.baseline.items()},
            **({f"champion_{metric}": result.champion[metric]} if result.champion else {}),
            "version": str(ref["version"]),
            "model_card": dg.MetadataValue.md(card),
            "slices": _md_table(result.slices),
            "feature_attributions": dg.MetadataValue.json(
                {k: round(float(v), 6) for k, v in result.attributions.head(20).items()}),
        })
        for gate in gates:
            yield dg.AssetCheckResult(check_name=gate.name, passed=gate.passed, description=gate.detail,
                                      metadata={"detail": gate.detail,
                                                **({"value": gate.value} if gate.value is not None
                                                   and np.isfinite(gate.value) else {}),
                                                **({"threshold": gate.threshold} if gate.threshold is not None else {})})

    @dg.asset(key=keys["champion"], kinds={"mlflow"},
              description=f"The registry alias `champion` of `{name}`: moved to the new version when every gate "
                          "passed (the old champion keeps `previous`)"
                          + (", after a person approves it with the approve job" if spec.gates.require_approval
                             else f", after it beats the champion online ({spec.serving.rollout.mode})"
                             if spec.serving.rollout.mode != "none" else "") + ". Every move is audited.",
              ins={"evaluation": dg.AssetIn(keys["evaluation"])}, **common)
    def champion(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, evaluation: pd.DataFrame):
        rollout = spec.serving.rollout
        row = _model_ref(evaluation)
        registry = mlflow_tracking.registry(name)
        gates = json.loads(row["gates"])
        details = {"dagster_run_id": context.run_id, "partition": context.partition_key,
                   "gates": {g["name"]: g["passed"] for g in gates}, "metric": row["metric"],
                   "value": row["value"], "champion_value": row["champion_value"]}
        version = str(row["version"])
        if not row["all_gates_passed"]:
            failed = [g["name"] for g in gates if not g["passed"]]
            record = registry.record("gate-failed", version, f"gates failed: {', '.join(failed)}", details)
        elif spec.gates.require_approval:
            record = registry.record("awaiting-approval", version,
                                     "every gate passed; gates.require_approval is set", details)
        elif rollout.mode != "none" and registry.version_of("champion") not in (None, version):
            # stays `challenger`: the endpoint serves it in shadow or canary until the online comparison decides
            record = registry.record("online-trial", version,
                                     f"every gate passed; on trial in {rollout.mode} for {rollout.window_days} "
                                     "days of labelled traffic", details)
        else:
            record = registry.promote(version, f"every gate passed ({row['metric']} {row['value']:.4f})", details)
        current = registry.aliases()
        return dg.Output(pd.DataFrame([{"champion": current.get("champion"), "previous": current.get("previous"),
                                        "challenger": current.get("challenger"), "action": record["action"],
                                        "version": version, "at": record["at"]}]),
                         metadata={"action": record["action"], "reason": record["reason"],
                                   "champion_version": str(current.get("champion")),
                                   "previous_version": str(current.get("previous")),
                                   "audit": dg.MetadataValue.json(record)})

    retrain = dg.define_asset_job(f"{name}_retrain", selection=dg.AssetSelection.assets(
        keys["training_set"], keys["model"], keys["evaluation"], keys["champion"]),
        description=f"Retrain {name} for one {spec.training.cadence} partition: training_set → champion.",
        tags={"ml_platform/model": name})
    schedule = dg.build_schedule_from_partitioned_job(retrain, hour_of_day=3, name=f"{name}_retrain_schedule")
    return [training_set, model, evaluation, champion], [retrain, *_registry_jobs(spec)], [schedule]


def _registry_jobs(spec: ModelSpec) -> list[dg.JobDefinition]:
    """`<model>_rollback` and `<model>_approve`: alias moves a person starts from the UI, audited."""
    name = spec.name

    class RollbackConfig(dg.Config):
        reason: str = "manual rollback"
        requested_by: str = "unknown"

    class ApproveConfig(dg.Config):
        version: str
        reason: str = "approved"
        approved_by: str = "unknown"

    @dg.op(name=f"{name}_rollback_champion")
    def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, mlflow_tracking: MlflowTracking):
        record = mlflow_tracking.registry(name).rollback(
            config.reason, {"dagster_run_id": context.run_id, "requested_by": config.requested_by})
        context.log.info(f"rolled back {name}: champion {record['from_version']} → {record['version']}")
        context.add_output_metadata({"audit": dg.MetadataValue.json(record)})
        return record

    @dg.op(name=f"{name}_approve_challenger")
    def approve_challenger(context: dg.OpExecutionContext, config: ApproveConfig, mlflow_tracking: MlflowTracking):
        from ml_platform.core.registry import RegistryError

        registry = mlflow_tracking.registry(name)
        try:
            record = registry.promote_gated(config.version, config.reason,
                                            {"dagster_run_id": context.run_id, "approved_by": config.approved_by})
        except RegistryError as error:
            raise dg.Failure(str(error)) from None
        context.add_output_metadata({"audit": dg.MetadataValue.json(record)})
        return record

    @dg.job(name=f"{name}_rollback", description=f"Move `champion` of {name} back to `previous` (audited).",
            tags={"ml_platform/model": name})
    def rollback_job():
        rollback_champion()

    @dg.job(name=f"{name}_approve", description=f"Promote a gated `challenger` of {name} to `champion`.",
            tags={"ml_platform/model": name})
    def approve_job():
        approve_challenger()

    return [rollback_job, approve_job]


_GATE_DESCRIPTIONS = {
    "metric_floor": "The holdout metric meets the spec's floor (gates.min / gates.max).",
    "not_worse_than_champion": "Not worse than the current champion on the same holdout by more than "
                               "gates.max_regression.",
    "fairness_gap": "The metric's gap across the sensitive group stays under gates.fairness.max_gap.",
    "prediction_sanity": "Predictions are finite, in range and not constant.",
}


def _log_learning_curve(curve: dict[str, dict[str, list[float]]]) -> None:
    import mlflow
    from mlflow.entities import Metric

    import time

    now = int(time.time() * 1000)
    metrics = [Metric(f"curve_{split}_{name}", float(value), now, step)
               for split, by_name in curve.items() for name, values in by_name.items()
               for step, value in enumerate(values)]
    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])


def _load(tracking: MlflowTracking, run_id: str):
    import mlflow

    from ml_platform.core.model import Model

    tracking.client()
    return Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_FILES))


def _image(png_base64: str):
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(png_base64)))
