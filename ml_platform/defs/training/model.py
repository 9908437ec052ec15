"""`<model>/model`: LightGBM trained on a training set, logged to MLflow and registered as `challenger`."""

import dagster as dg
import pandas as pd

from ml_platform.core.training_run import TrainingError, metric_of, train_and_log
from ml_platform.defs import conventions
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import ModelSpec


def model_asset(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(key=conventions.key(spec, "model"), partitions_def=partitions,
              io_manager_key=conventions.IO_MANAGER_KEY, kinds={"lightgbm", "mlflow"},
              description=f"LightGBM ({spec.task}) trained on the training split with early stopping; logged to "
                          f"MLflow and registered as a new version of `{spec.name}` with alias `challenger`.",
              ins={"training_set": dg.AssetIn(conventions.key(spec, "training_set"))})
    def model(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, training_set: pd.DataFrame):
        partition = context.partition_key
        with mlflow_tracking.start_run(context, spec.name, tags={"spec_digest": spec.digest,
                                                                 "code_version": spec.digest}) as run:
            try:
                trained = train_and_log(spec, training_set, partition)
            except TrainingError as error:
                raise dg.Failure(f"partition {partition}: {error}") from None
            metric = metric_of(spec)
            version = mlflow_tracking.registry(spec.name).register(
                trained.model_uri, run.info.run_id, description=spec.description,
                tags={"dagster_run_id": context.run.run_id, "partition": partition, "spec_digest": spec.digest,
                      f"valid_{metric}": round(trained.valid.get(metric, float("nan")), 6)})
        result = trained.result
        row = {"model": spec.name, "version": version, "run_id": run.info.run_id,
               "experiment_id": run.info.experiment_id, "model_uri": trained.model_uri, "partition": partition,
               "spec_digest": spec.digest, "best_iteration": result.best_iteration,
               "model_sha256": trained.model_sha256}
        url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
        return dg.Output(pd.DataFrame([row]), metadata={
            "registered_version": version, "mlflow_run_id": run.info.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_tracking_uri": mlflow_tracking.resolved_tracking_uri(),
            "best_iteration": result.best_iteration, "train_seconds": round(result.seconds, 2),
            **{f"valid_{k}": v for k, v in trained.valid.items()}, "model_sha256": trained.model_sha256,
            **({"tuning_best_trials": dg.MetadataValue.json(trained.trials[:5])} if trained.trials else {})})

    return model

