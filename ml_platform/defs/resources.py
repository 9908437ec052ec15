"""MLflow tracking and registry as a Pythonic Dagster resource.

It keeps dagster-mlflow's conventions (the `dagster_run_id` tag that links an MLflow run to its Dagster run,
and an `end_run` that `dagster_mlflow.end_mlflow_on_run_finished` can call in jobs that use that hook), but
each MLflow run is owned by a context manager around the step that creates it: it ends FINISHED when the step
succeeds and FAILED when it raises or is interrupted, whichever way the Dagster run was launched (a UI click on
the implicit asset job, a schedule, a sensor, a backfill, or a job with hooks).

The Dask cluster is a resource too (`DaskCluster`), so the engine a model's steps run on, local or Dask, is
chosen here from the spec, once (`engine_for`), and handed to each step with the cluster's part in it
(`engine_step`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from ml_platform.core import mlflow_store
from ml_platform.core.engine import Engine, engine_named
from ml_platform.spec import ModelSpec


class MlflowTracking(dg.ConfigurableResource):
    """Where runs, metrics, artifacts and registered models go. Configure with EnvVar in production."""

    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default a SQLite store under ML_PLATFORM_HOME/mlflow"
    )
    registry_uri: str | None = Field(default=None, description="Model registry URI; default the tracking URI")
    artifact_root: str | None = Field(
        default=None,
        description="Where new experiments keep artifacts; "
        "default the tracking server's own (served artifacts), or "
        "ML_PLATFORM_HOME/mlflow/artifacts for a local store",
    )
    ui_url: str | None = Field(default=None, description="Base URL of the MLflow UI, for links in metadata")

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or mlflow_store.default_tracking_uri()

    def client(self):
        """This store's client, with the process's MLflow helpers pointed at it (see `mlflow_store.use_store`).
        Both URIs are passed explicitly: a variable a previous store exported must not redirect this one."""
        uri = self.resolved_tracking_uri()
        return mlflow_store.use_store(uri, self.registry_uri or uri)

    def registry(self, model: str):
        from ml_platform.core.registry import Registry

        return Registry(self.client(), model)

    def load_run_model(self, run_id: str):
        """The platform model a run logged (native LightGBM text + manifest)."""
        return mlflow_store.load_model(run_id, self.client().tracking_uri)

    def champion_run(self, model: str) -> tuple[str, str]:
        """(version, training run id) of the champion; a clear failure before the first promotion."""
        client = self.client()
        version = mlflow_store.version_of_alias(client, model, mlflow_store.CHAMPION)
        if version is None:
            raise dg.Failure(f"{model} has no champion yet: materialize {model}/champion first")
        run_id = mlflow_store.run_of(client, model, version)
        if run_id is None:
            raise dg.Failure(f"{model} v{version} has no training run: register versions through {model}/model")
        return version, run_id

    def champion(self, model: str):
        """(version, Model, training run id) of the champion."""
        version, run_id = self.champion_run(model)
        return version, self.load_run_model(run_id), run_id

    def run_artifact(self, run_id: str, name: str):
        """A JSON artifact (smoke rows, the drift reference) of a run in this store."""
        return mlflow_store.load_json_artifact(run_id, name, self.client().tracking_uri)

    def experiment_id(self, model: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client()
        name = f"ml_platform/{model}"
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            root = self.artifact_root or mlflow_store.default_artifact_root(self.resolved_tracking_uri())
            return client.create_experiment(name, artifact_location=f"{root}/{model}" if root else None)
        except MlflowException:  # created concurrently
            return client.get_experiment_by_name(name).experiment_id

    @contextlib.contextmanager
    def start_run(
        self,
        context: dg.AssetExecutionContext,
        model: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Iterator:
        """An MLflow run for this step (or `run_id` resumed), ended FINISHED or FAILED with the step."""
        import mlflow

        try:
            self.client()
            experiment_id = self.experiment_id(model)
        except Exception as error:
            raise dg.Failure(
                f"MLflow tracking store {self.resolved_tracking_uri()!r} cannot be reached: "
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            ) from None
        if mlflow.active_run() is not None:
            mlflow.end_run("KILLED")
        run_tags = {
            "dagster_run_id": context.run.run_id,
            "dagster_job": context.job_name,
            "dagster_asset": context.asset_key.to_user_string(),
            **({"dagster_partition": context.partition_key} if context.has_partition_key else {}),
            **(tags or {}),
        }
        label = context.partition_key if context.has_partition_key else "run"
        run = mlflow.start_run(
            run_id=run_id,
            experiment_id=None if run_id else experiment_id,
            run_name=None if run_id else f"{model}-{label}",
            tags=run_tags,
        )
        try:
            yield run
        except BaseException:
            mlflow.end_run("FAILED")
            raise
        mlflow.end_run("FINISHED")

    def end_run(self, status: str = "FINISHED") -> None:
        """For `dagster_mlflow.end_mlflow_on_run_finished`: end whatever run is still active."""
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status)

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        base = self.ui_url or (self.tracking_uri if (self.tracking_uri or "").startswith("http") else None)
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def tracking_from_env() -> MlflowTracking:
    """The resource as `definitions` configures it: EnvVar where the variable is set, defaults otherwise."""
    fields = {
        "tracking_uri": "MLFLOW_TRACKING_URI",
        "registry_uri": "MLFLOW_REGISTRY_URI",
        "artifact_root": "ML_PLATFORM_MLFLOW_ARTIFACTS",
        "ui_url": "ML_PLATFORM_MLFLOW_UI",
    }
    return MlflowTracking(**{field: dg.EnvVar(env) for field, env in fields.items() if os.environ.get(env)})


class DaskCluster(dg.ConfigurableResource):
    """The Dask cluster of `training.engine: dask` specs: a scheduler address (EnvVar ML_PLATFORM_DASK_ADDRESS
    in production), or a local cluster of this machine when none is given. The client connects on first use
    in a step and stays connected until the run's resources are torn down, so outputs are written by the same
    workers that computed them."""

    address: str | None = Field(
        default=None,
        description="Dask scheduler, e.g. tcp://scheduler:8786; default "
        "a local cluster (one worker process per core), started once per process",
    )
    n_workers: int | None = Field(default=None, description="Local cluster only: worker processes")
    memory_limit: str | None = Field(default=None, description="Local cluster only: memory per worker ('4GB')")
    dashboard_url: str | None = Field(
        default=None, description="The dashboard's URL as users reach it; default the one the scheduler reports"
    )
    _client: Any = PrivateAttr(default=None)

    def client(self):
        """The connected client (connecting on first use); a Failure that names the address and the variable
        when the scheduler does not answer."""
        from ml_platform.core import dask_cluster

        if self._client is None:
            settings = dask_cluster.ClusterSettings(self.address, self.n_workers, self.memory_limit)
            try:
                self._client = dask_cluster.connect(settings)
            except dask_cluster.ClusterError as error:
                raise dg.Failure(str(error)) from None
        return self._client

    def metadata(self) -> dict:
        """What a step's metadata says about the cluster: the dashboard link, the scheduler and the workers."""
        from ml_platform.core import dask_cluster

        client = self.client()
        link = self.dashboard_url or dask_cluster.dashboard_link(client)
        return {
            **({"dask_dashboard": dg.MetadataValue.url(link)} if link else {}),
            "dask_scheduler": client.scheduler.address if client.scheduler else "",
            "dask_workers": len(dask_cluster.worker_memory(client)),
        }

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def dask_from_env() -> DaskCluster:
    """The resource as `definitions` configures it: EnvVar where the variable is set, defaults otherwise."""
    from ml_platform.core import dask_cluster

    fields = {
        "address": dask_cluster.ADDRESS_ENV,
        "memory_limit": dask_cluster.MEMORY_ENV,
        "dashboard_url": "ML_PLATFORM_DASK_DASHBOARD",
    }
    values: dict[str, Any] = {field: dg.EnvVar(env) for field, env in fields.items() if os.environ.get(env)}
    if os.environ.get(dask_cluster.WORKERS_ENV):
        values["n_workers"] = dg.EnvVar.int(dask_cluster.WORKERS_ENV)
    return DaskCluster(**values)


def engine_for(spec: ModelSpec, dask_cluster: DaskCluster | None = None) -> Engine:
    """The engine a model's steps run on: its spec's `training.engine`, read here and nowhere else. In a step,
    the Dask engine computes on the cluster of `dask_cluster` (connected when first needed); declaring the
    assets, none is given: the engine then only names itself (its kind, the inputs it loads)."""
    return engine_named(spec.training.engine, dask_cluster.client if dask_cluster is not None else None)


@contextlib.contextmanager
def engine_step(spec: ModelSpec, dask_cluster: DaskCluster, *stored: Any) -> Iterator[tuple[Engine, dict[str, Any]]]:
    """A step of this model on its engine (`engine_for`): (the engine, what the step's metadata says about it).
    On a cluster, each stored input is first checked to fit a worker partition by partition, the metadata names
    the cluster's dashboard, scheduler and workers, and the cluster's errors fail the step with their message;
    in the step's own process there is nothing to check or say."""
    from ml_platform.core.dask_cluster import ClusterError

    engine = engine_for(spec, dask_cluster)
    try:
        engine.check_fits(*stored)
        yield engine, dask_cluster.metadata() if engine.on_cluster else {}
    except ClusterError as error:
        raise dg.Failure(str(error)) from None
