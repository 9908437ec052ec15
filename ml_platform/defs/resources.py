"""MLflow tracking and registry as a Pythonic Dagster resource.

It keeps dagster-mlflow's conventions (the `dagster_run_id` tag that links an MLflow run to its Dagster run,
and an `end_run` that `dagster_mlflow.end_mlflow_on_run_finished` can call in jobs that use that hook), but
each MLflow run is owned by a context manager around the step that creates it: it ends FINISHED when the step
succeeds and FAILED when it raises or is interrupted, whichever way the Dagster run was launched (a UI click on
the implicit asset job, a schedule, a sensor, a backfill, or a job with hooks).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from ml_platform import settings


class MlflowTracking(dg.ConfigurableResource):
    """Where runs, metrics, artifacts and registered models go. Configure with EnvVar in production."""

    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI; default a SQLite store "
                                     "under ML_PLATFORM_HOME/mlflow")
    registry_uri: str | None = Field(default=None, description="Model registry URI; default the tracking URI")
    artifact_root: str | None = Field(default=None, description="Where new experiments keep artifacts; "
                                      "default ML_PLATFORM_HOME/mlflow/artifacts")
    ui_url: str | None = Field(default=None, description="Base URL of the MLflow UI, for links in metadata")

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        folder = settings.home() / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def _artifact_root(self) -> str:
        if self.artifact_root:
            return self.artifact_root
        return (settings.home() / "mlflow" / "artifacts").as_uri()

    def client(self):
        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        uri = self.resolved_tracking_uri()
        # mlflow.register_model and artifact helpers use the process-wide URIs: set both, every time, so a
        # previous store (another model, a test) can never receive this model's versions.
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(self.registry_uri or uri)
        return _client(uri, self.registry_uri or uri)

    def registry(self, model: str):
        from ml_platform.core.registry import Registry

        return Registry(self.client(), model)

    def experiment_id(self, model: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client()
        name = f"ml_platform/{model}"
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=f"{self._artifact_root()}/{model}")
        except MlflowException:  # created concurrently
            return client.get_experiment_by_name(name).experiment_id

    @contextlib.contextmanager
    def start_run(self, context: dg.AssetExecutionContext, model: str, run_id: str | None = None,
                  tags: dict[str, str] | None = None) -> Iterator:
        """An MLflow run for this step (or `run_id` resumed), ended FINISHED or FAILED with the step."""
        import mlflow

        try:
            self.client()
            experiment_id = self.experiment_id(model)
        except Exception as error:
            raise dg.Failure(f"MLflow tracking store {self.resolved_tracking_uri()!r} cannot be reached: "
                             f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
        if mlflow.active_run() is not None:
            mlflow.end_run("KILLED")
        run_tags = {"dagster_run_id": context.run_id, "dagster_job": context.job_name,
                    "dagster_asset": context.asset_key.to_user_string(),
                    **({"dagster_partition": context.partition_key} if context.has_partition_key else {}),
                    **(tags or {})}
        run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                               run_name=None if run_id else f"{model}-{context.partition_key if context.has_partition_key else 'run'}",
                               tags=run_tags)
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


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str, registry_uri: str):
    """One client per store: building one opens (and for SQLite, checks) the database, which is slow."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def tracking_from_env() -> MlflowTracking:
    """The resource as `definitions` configures it: EnvVar where the variable is set, defaults otherwise."""
    fields = {"tracking_uri": "MLFLOW_TRACKING_URI", "registry_uri": "MLFLOW_REGISTRY_URI",
              "artifact_root": "ML_PLATFORM_MLFLOW_ARTIFACTS", "ui_url": "ML_PLATFORM_MLFLOW_UI"}
    return MlflowTracking(**{field: dg.EnvVar(env) for field, env in fields.items() if os.environ.get(env)})

