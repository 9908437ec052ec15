"""`<model>/model`: LightGBM trained on a training set, logged to MLflow and registered as `challenger`.

Before training, the retrain's inputs (each day's data version in the window, the spec digest, the training
code version) are compared with those recorded on the newest registered version: when they are equal, the
step trains nothing and registers no copy; it reports that version, with the reason, and the same data
version as the materialization that registered it. With `training.engine: dask` it trains on the cluster.
"""

import dagster as dg

from ml_platform.core.retraining import RetrainInputs, UnchangedVersion, retrain_inputs, unchanged_version
from ml_platform.defs import conventions
from ml_platform.defs.resources import DaskCluster, MlflowTracking, optional_dask_step
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
        kinds={"lightgbm", "mlflow", *({"dask"} if conventions.on_dask(spec) else set())},
        description=f"LightGBM ({spec.task}): early stopping on the validation days picks the rounds"
        + ("; the final model is refit on training + validation days" if spec.training.refit else "")
        + f"; logged to MLflow and registered as a new version of `{spec.name}` with alias "
        "`challenger`. When the data, spec and training code equal the newest version's, "
        "nothing is trained: that version is reported again (a no-op retrain).",
        ins={"training_set": dg.AssetIn(conventions.key(spec, "training_set"), metadata=conventions.frame_input(spec))},
    )
    def model(
        context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, dask_cluster: DaskCluster, training_set
    ):  # a DataFrame, or StoredPartitions on Dask
        with optional_dask_step(dask_cluster, conventions.on_dask(spec), training_set) as (client, cluster):
            return _train(context, mlflow_tracking, spec, training_set, client, cluster)

    return model


def _train(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    spec: ModelSpec,
    training_set,
    client,
    cluster: dict,
) -> dg.Output:
    """A new version trained, logged and registered as `challenger`; or the newest one, when it is unchanged.
    `client`: the Dask client on Dask (None locally); `cluster`: metadata about that cluster."""
    import pandas as pd

    from ml_platform.core.training_run import TrainingError, metric_of, train_and_log

    partition = context.partition_key
    inputs = retrain_inputs(spec, training_set)
    registry = mlflow_tracking.registry(spec.name)
    existing = unchanged_version(registry.client, spec.name, inputs)
    if existing is not None:
        context.log.info(existing.reason)
        return _unchanged(mlflow_tracking, existing, spec, partition, cluster)
    with mlflow_tracking.start_run(
        context, spec.name, tags={"spec_digest": spec.digest, "code_version": spec.digest}
    ) as run:
        try:
            trained = train_and_log(spec, training_set, partition, versions=inputs.versions, client=client)
        except TrainingError as error:
            raise dg.Failure(f"partition {partition}: {error}") from None
        metric = metric_of(spec)
        result = trained.result
        version = registry.register(
            trained.model_uri,
            run.info.run_id,
            description=spec.description,
            tags={
                "dagster_run_id": context.run.run_id,
                "partition": partition,
                f"valid_{metric}": round(trained.valid.get(metric, float("nan")), 6),
                "model_sha256": trained.model_sha256,
                "best_iteration": result.best_iteration,
                **inputs.tags(),
            },
        )
    row = {
        "model": spec.name,
        "version": version,
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": trained.model_uri,
        "partition": partition,
        "spec_digest": spec.digest,
        "best_iteration": result.best_iteration,
        "model_sha256": trained.model_sha256,
        "noop": False,
        "noop_reason": "",
    }
    url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
    return dg.Output(
        pd.DataFrame([row]),
        data_version=model_data_version(version, trained.model_sha256),
        metadata={
            "registered_version": version,
            "noop": False,
            "mlflow_run_id": run.info.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_tracking_uri": mlflow_tracking.resolved_tracking_uri(),
            "best_iteration": result.best_iteration,
            "train_seconds": round(result.seconds, 2),
            **{f"valid_{k}": v for k, v in trained.valid.items()},
            "model_sha256": trained.model_sha256,
            **_inputs_metadata(inputs),
            "timings": dg.MetadataValue.json({k: round(v, 3) for k, v in trained.timings.items()}),
            **({"tuning_best_trials": dg.MetadataValue.json(trained.trials[:5])} if trained.trials else {}),
            **cluster,
        },
    )


def _inputs_metadata(inputs: RetrainInputs) -> dict:
    return {"data_versions_digest": inputs.data_versions_digest, "training_code_version": inputs.training_code_version}


def _unchanged(
    mlflow_tracking: MlflowTracking, existing: UnchangedVersion, spec: ModelSpec, partition: str, cluster: dict
) -> dg.Output:
    """The newest registered version again: the row evaluation and champion read, and why nothing was trained."""
    import pandas as pd

    from ml_platform.core.training_run import metric_of

    run = mlflow_tracking.client().get_run(existing.run_id)
    metric = metric_of(spec)
    tags, sha256 = existing.tags, existing.tags.get("model_sha256", "")
    best_iteration = int(tags.get("best_iteration") or run.data.params.get("best_iteration") or 0)
    row = {
        "model": spec.name,
        "version": existing.version,
        "run_id": existing.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": existing.model_uri,
        "partition": partition,
        "spec_digest": spec.digest,
        "best_iteration": best_iteration,
        "model_sha256": sha256,
        "noop": True,
        "noop_reason": existing.reason,
    }
    url = mlflow_tracking.run_url(run.info.experiment_id, existing.run_id)
    return dg.Output(
        pd.DataFrame([row]),
        data_version=model_data_version(existing.version, sha256),
        metadata={
            "registered_version": existing.version,
            "noop": True,
            "noop_reason": existing.reason,
            "mlflow_run_id": existing.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_tracking_uri": mlflow_tracking.resolved_tracking_uri(),
            "best_iteration": best_iteration,
            "train_seconds": 0.0,
            **({f"valid_{metric}": float(tags[f"valid_{metric}"])} if f"valid_{metric}" in tags else {}),
            "model_sha256": sha256,
            "data_versions_digest": tags["data_versions_digest"],
            "training_code_version": tags["training_code_version"],
            "registered_by_dagster_run": tags.get("dagster_run_id", ""),
            **cluster,
        },
    )
