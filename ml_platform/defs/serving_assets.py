"""The serving layer of one model: `<model>/endpoint` (the deployed champion) and `<model>/predictions`.

`endpoint` depends on `champion`, so the lineage graph shows which data and gates produced the live version;
it succeeds only when the endpoint serves that version and its smoke test matches offline scoring exactly.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform import settings
from ml_platform.core.mlflow_store import SMOKE_ROWS, download_model_files
from ml_platform.defs import conventions
from ml_platform.defs.partitions import split_by_partition
from ml_platform.defs.resources import DaskCluster, MlflowTracking, engine_for, engine_step
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:  # the steps import numpy, pandas and the deploy code when they run
    import pandas as pd
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

    from ml_platform.core.engine import BatchPredictions

PROJECT_DIR = Path(__file__).resolve().parents[2]  # a checkout's Dockerfile, for docker deploys


def build_serving(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.Definitions:
    return dg.Definitions(assets=[endpoint_asset(spec), predictions_asset(spec, data)], jobs=[deploy_job(spec)])


def deploy_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_deploy"


def deploy_job(spec: ModelSpec) -> "UnresolvedAssetJobDefinition":
    """`<model>_deploy`: the endpoint alone, which the registry decisions (rollback, online challenger) run after
    moving the champion."""
    return dg.define_asset_job(
        deploy_job_name(spec),
        selection=dg.AssetSelection.assets(conventions.key(spec, "endpoint")),
        description=f"Deploy the version {spec.name}'s registry names champion; the endpoint's smoke test proves "
        "it serves (started by the rollback and online challenger sensors).",
        tags=conventions.model_tags(spec),
    )


def endpoint_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    name, serving = spec.name, spec.serving

    @conventions.asset(
        spec,
        "endpoint",
        kinds={"http", "python"},
        description=f"The HTTP endpoint serving the `champion` of {name} ({serving.target}, port "
        f"{serving.port}); verified by a smoke test of held-out rows on every deploy.",
        deps=[dg.AssetDep(conventions.key(spec, "champion"), partition_mapping=dg.AllPartitionMapping())],
        automation_condition=conventions.whenever_the_champion_moves(),
    )
    def endpoint(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking):
        import pandas as pd

        from ml_platform.core.deploy import DeployError, deploy
        from ml_platform.serving.prediction_log import log_path

        version, offline, run_id = mlflow_tracking.champion(name)
        token = os.environ.get("ML_PLATFORM_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        rows = mlflow_tracking.run_artifact(run_id, SMOKE_ROWS)["rows"]
        home = settings.home()
        expected = offline.predict(pd.DataFrame(rows))
        try:
            deployed = deploy(
                serving.target,
                name,
                version,
                serving.port,
                home,
                rows,
                expected,
                headers,
                project_dir=PROJECT_DIR,
                model_folder=lambda: download_model_files(run_id, mlflow_tracking.client().tracking_uri),
                service_url=settings.endpoint_service(name) if serving.target == "local" else None,
                expected_labels=offline.labels.predicted(expected) if offline.labels else None,
            )
        except (DeployError, ValueError) as error:
            raise dg.Failure(
                f"deploy of {name} v{version} failed; the previous endpoint keeps serving: {error}"
            ) from None
        smoke = deployed.smoke
        if not smoke.passed:
            raise dg.Failure(
                f"smoke test of {name} v{version} failed: {smoke.problem}"
                + ("" if smoke.label_mismatches else " (allowed 1e-9)")
            )
        details = {k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in deployed.details.items()}
        if serving.target == "local":
            details["prediction_log"] = str(log_path(home, name))
        return dg.MaterializeResult(
            metadata={
                "url": dg.MetadataValue.url(f"{deployed.url}/v1/models/{name}"),
                "version": version,
                "smoke_test": dg.MetadataValue.json(
                    {"rows": smoke.rows, "max_abs_diff": smoke.max_abs_diff, "passed": smoke.passed}
                ),
                "p50_latency_ms": round(smoke.p50_ms, 3),
                "target": serving.target,
                **details,
            }
        )

    return endpoint


def predictions_asset(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    name = spec.name
    champion = conventions.key(spec, "champion")

    @conventions.asset(
        spec,
        "predictions",
        partitions_def=data,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={conventions.frame_kind(spec), "parquet"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"Batch scores of each day's features by the champion of {name}, with the model "
        "version beside each prediction" + (" (scored on the Dask workers)." if engine_for(spec).on_cluster else "."),
        ins={"features": dg.AssetIn(conventions.key(spec, "features"), metadata=conventions.frame_input(spec))},
        deps=[dg.AssetDep(champion, partition_mapping=dg.AllPartitionMapping())],
        automation_condition=conventions.daily_once_a_champion_exists(champion),
    )
    def predictions(
        context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, dask_cluster: DaskCluster, features
    ):
        version, model, _ = mlflow_tracking.champion(name)
        keys = list(context.partition_keys)

        def by_partition(frame: "pd.DataFrame") -> "dict[str, pd.DataFrame]":
            """A frame's rows in the run's partitions, by event time (one partition: all of them)."""
            return split_by_partition(frame, spec.timestamp, keys, data)[1] if len(keys) > 1 else {keys[0]: frame}

        with engine_step(spec, dask_cluster, features) as (engine, cluster):
            scored = engine.predictions(spec, features, model, version, by_partition)
        if not scored.parts:
            raise dg.Failure(f"{name}/features has none of the partitions {keys[0]} → {keys[-1]}; materialize them")
        missing = [key for key in keys if key not in scored.parts]
        if missing:
            raise dg.Failure(f"{name}/features has no stored partition {missing[0]}; materialize it first")
        return dg.Output(
            scored.parts if len(keys) > 1 else scored.parts[keys[0]],
            metadata={"rows": scored.rows, "model_version": version, **_scores_metadata(model, scored), **cluster},
        )

    return predictions


def _scores_metadata(model, scored: "BatchPredictions") -> dict:
    """Binary and regression: the mean prediction; multiclass: the classes and how often each is predicted."""
    if scored.predicted_classes is None:
        return {"mean_prediction": scored.mean_prediction}
    return {
        "classes": dg.MetadataValue.json([str(c) for c in model.classes]),
        "predicted_classes": dg.MetadataValue.json(scored.predicted_classes),
    }
