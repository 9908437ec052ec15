"""The serving layer of one model: `<model>/endpoint` (the deployed champion) and `<model>/predictions`.

`endpoint` depends on `champion`, so the lineage graph shows which data and gates produced the live version;
it succeeds only when the endpoint serves that version and its smoke test matches offline scoring exactly.
"""

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform import settings
from ml_platform.defs.data_assets import IO_MANAGER_KEY, split_by_partition
from ml_platform.defs.resources import MlflowTracking
from ml_platform.defs.training_assets import SMOKE_ROWS
from ml_platform.spec import ModelSpec


def scored_daily(champion_key: dg.AssetKey) -> dg.AutomationCondition:
    """Each new day of features, once some champion exists (whichever week it came from)."""
    champion = dg.AssetSelection.assets(champion_key)
    return (dg.AutomationCondition.eager().ignore(champion)
            & dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing()).allow(champion))


def build_serving_assets(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    name = spec.name
    champion_key = dg.AssetKey([name, "champion"])
    freshness = spec.monitoring.endpoint_freshness

    @dg.asset(key=[name, "endpoint"], group_name=name, owners=[spec.owner], kinds={"http", "python"},
              description=f"The HTTP endpoint serving the `champion` of {name} ({spec.serving.target}, port "
                          f"{spec.serving.port}); verified by a smoke test of held-out rows on every deploy.",
              deps=[dg.AssetDep(champion_key, partition_mapping=dg.AllPartitionMapping())],
              freshness_policy=(dg.FreshnessPolicy.time_window(fail_window=freshness.fail_after,
                                                               warn_window=freshness.warn_after)
                                if freshness else None),
              # redeploy whenever the champion moves (any week's champion step)
              automation_condition=(dg.AutomationCondition.any_deps_updated().since_last_handled()
                                    & ~dg.AutomationCondition.in_progress()),
              tags={"ml_platform/model": name})
    def endpoint(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking):
        import mlflow

        from ml_platform.core.deploy import (DeployError, deploy_docker, ensure_local_server, smoke_test,
                                             wait_for_version)
        from ml_platform.serving.loader import RegistrySource

        registry = mlflow_tracking.registry(name)
        version = registry.version_of("champion")
        if version is None:
            raise dg.Failure(f"{name} has no champion yet: materialize {name}/champion first")
        token = os.environ.get("ML_PLATFORM_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        run_id = mlflow_tracking.client().get_model_version(name, version).run_id
        rows = mlflow.artifacts.load_dict(f"runs:/{run_id}/{SMOKE_ROWS}")["rows"]
        source = RegistrySource(name, mlflow_tracking.resolved_tracking_uri())
        offline = source.load(version).model
        expected = offline.predict(pd.DataFrame(rows))
        extra = {}
        try:
            if spec.serving.target == "docker":
                project = Path(__file__).resolve().parents[2]
                if not (project / "Dockerfile").exists():
                    raise DeployError(f"no Dockerfile at {project}: docker deploys run from a project checkout")
                folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files")
                deployed = deploy_docker(name, version, Path(folder), spec.serving.port, project,
                                         settings.home() / "predictions" / "docker", rows, expected, headers)
                url, result = deployed["url"], deployed["smoke"]
                extra = {"container": deployed["container"], "image": deployed["image"],
                         "retired": dg.MetadataValue.json(deployed["retired"])}
            else:
                url, started_pid = ensure_local_server(name, spec.serving.port, settings.home())
                wait_for_version(url, name, version, headers)
                result = smoke_test(url, name, rows, expected, headers)
                extra = {"process": "started" if started_pid else "already running",
                         "prediction_log": str(settings.home() / "predictions" / f"{name}.sqlite")}
        except DeployError as error:
            raise dg.Failure(f"deploy of {name} v{version} failed; the previous endpoint keeps serving: "
                             f"{error}") from None
        if not result.passed:
            raise dg.Failure(f"smoke test of {name} v{version} failed: max abs difference {result.max_abs_diff:.3g} "
                             "between the endpoint and offline scoring (allowed 1e-9)")
        return dg.MaterializeResult(metadata={
            "url": dg.MetadataValue.url(f"{url}/v1/models/{name}"), "version": version,
            "smoke_test": dg.MetadataValue.json({"rows": result.rows, "max_abs_diff": result.max_abs_diff,
                                                 "passed": result.passed}),
            "p50_latency_ms": round(result.p50_ms, 3), "target": spec.serving.target, **extra})

    @dg.asset(key=[name, "predictions"], group_name=name, owners=[spec.owner], kinds={"pandas", "parquet"},
              partitions_def=data, io_manager_key=IO_MANAGER_KEY, backfill_policy=dg.BackfillPolicy.single_run(),
              description=f"Batch scores of each day's features by the champion of {name}, with the model "
                          "version beside each prediction.",
              ins={"features": dg.AssetIn([name, "features"])},
              deps=[dg.AssetDep(champion_key, partition_mapping=dg.AllPartitionMapping())],
              automation_condition=scored_daily(champion_key),
              tags={"ml_platform/model": name})
    def predictions(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, features: pd.DataFrame):
        from ml_platform.serving.loader import RegistrySource

        version = mlflow_tracking.registry(name).version_of("champion")
        if version is None:
            raise dg.Failure(f"{name} has no champion yet: materialize {name}/champion first")
        model = RegistrySource(name, mlflow_tracking.resolved_tracking_uri()).load(version).model
        scores = model.predict(features) if len(features) else []
        keep = [c for c in (spec.key, spec.timestamp, spec.target.name) if c and c in features.columns]
        frame = features[keep].assign(prediction=scores, model_version=version)
        if spec.task == "multiclass":
            frame = frame.assign(prediction=[list(p) for p in scores])
        keys = list(context.partition_keys)
        _, parts = split_by_partition(frame, spec.timestamp, keys, data)
        metadata = {"rows": len(frame), "model_version": version,
                    "mean_prediction": float(pd.Series(scores).mean()) if len(frame) and spec.task != "multiclass" else 0.0}
        return dg.Output(parts if len(keys) > 1 else frame, metadata=metadata)

    return [endpoint, predictions]
