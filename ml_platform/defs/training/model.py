"""`<model>/model`: LightGBM trained on a training set, logged to MLflow and registered as `challenger`.

Before training, the retrain's inputs (each day's data version in the window, the spec digest, the training
code version) are compared with those recorded on the newest registered version: when they are equal, the
step trains nothing and registers no copy; it reports that version, with the reason, and the same data
version as the materialization that registered it. With `training.engine: dask` it trains on the cluster.
"""

import dagster as dg

from ml_platform.core.engine import Engine
from ml_platform.core.retraining import RetrainOutcome, retrain_inputs, unchanged_version
from ml_platform.defs import conventions
from ml_platform.defs.resources import DaskCluster, MlflowTracking, engine_step
from ml_platform.spec import ModelSpec


def model_data_version(version: str, model_sha256: str) -> dg.DataVersion:
    """The model asset's data version: the registered version and the bytes of its model file."""
    return dg.DataVersion(f"v{version}-{model_sha256[:16]}")


def model_asset(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @conventions.asset(
        spec,
        "model",
        partitions_def=partitions,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={"lightgbm", "mlflow", *conventions.cluster_kinds(spec)},
        description=f"LightGBM ({spec.task}): early stopping on the validation days picks the rounds"
        + ("; the final model is refit on training + validation days" if spec.training.refit else "")
        + f"; logged to MLflow and registered as a new version of `{spec.name}` with alias "
        "`challenger`. When the data, spec and training code equal the newest version's, "
        "nothing is trained: that version is reported again (a no-op retrain).",
        ins={"training_set": dg.AssetIn(conventions.key(spec, "training_set"), metadata=conventions.frame_input(spec))},
    )
    def model(
        context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, dask_cluster: DaskCluster, training_set
    ):  # the engine's frame: a DataFrame, or StoredPartitions on Dask
        with engine_step(spec, dask_cluster, training_set) as (engine, cluster):
            return _train(context, mlflow_tracking, spec, training_set, engine, cluster)

    return model


def _train(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    spec: ModelSpec,
    training_set,
    engine: Engine,
    cluster: dict,
) -> dg.Output:
    """A new version trained, logged and registered as `challenger`; or the newest one, when it is unchanged.
    `engine`: the one the step runs on (`engine_step`); `cluster`: metadata about its cluster (none locally)."""
    from ml_platform.core.training_run import TrainingError, train_and_log

    partition = context.partition_key
    inputs = retrain_inputs(spec, training_set, engine)
    registry = mlflow_tracking.registry(spec.name)
    existing = unchanged_version(registry.client, spec.name, inputs)
    if existing is not None:
        context.log.info(existing.reason)
        recorded = mlflow_tracking.client().get_run(existing.run_id)
        unchanged = RetrainOutcome.unchanged(
            spec, partition, existing, recorded.info.experiment_id, recorded.data.params
        )
        return _output(unchanged, mlflow_tracking, cluster)
    with mlflow_tracking.start_run(
        context, spec.name, tags={"spec_digest": spec.digest, "code_version": spec.digest}
    ) as run:
        try:
            trained = train_and_log(spec, training_set, partition, versions=inputs.versions, engine=engine)
        except TrainingError as error:
            raise dg.Failure(f"partition {partition}: {error}") from None
        metric = spec.gate_metric
        version = registry.register(
            trained.model_uri,
            run.info.run_id,
            description=spec.description,
            tags={
                "dagster_run_id": context.run.run_id,
                "partition": partition,
                f"valid_{metric}": round(trained.valid.get(metric, float("nan")), 6),
                "model_sha256": trained.model_sha256,
                "best_iteration": trained.result.best_iteration,
                **inputs.tags(),
            },
        )
    outcome = RetrainOutcome.trained(spec, partition, version, run.info.run_id, run.info.experiment_id, trained, inputs)
    return _output(outcome, mlflow_tracking, cluster)


def _output(outcome: RetrainOutcome, mlflow_tracking: MlflowTracking, cluster: dict) -> dg.Output:
    """The outcome as the asset stores and shows it: its row, the data version of the registered model's bytes
    and its metadata with the run's links and `cluster` (about the Dask cluster on Dask)."""
    import pandas as pd

    url = mlflow_tracking.run_url(outcome.experiment_id, outcome.run_id)
    links = {
        **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
        "mlflow_tracking_uri": mlflow_tracking.resolved_tracking_uri(),
    }
    return dg.Output(
        pd.DataFrame([outcome.row()]),
        data_version=model_data_version(outcome.version, outcome.model_sha256),
        metadata={**outcome.to_metadata(links), **cluster},
    )
