"""Where the serving process gets its models: the registry alias (`champion`, `challenger`) or a folder.

No Dagster here. MLflow is imported only when the registry is used, and a loaded model is plain `Model`
(native LightGBM text + JSON manifest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml_platform.core.model import Model

MODEL_FILES = "model_files"


@dataclass(frozen=True)
class LoadedModel:
    model: Model
    version: str


class RegistrySource:
    """Models by alias from the MLflow registry (default store: ML_PLATFORM_HOME/mlflow/mlflow.db)."""

    def __init__(self, name: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        from ml_platform import settings

        self.name = name
        self.tracking_uri = (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                             or f"sqlite:///{settings.home() / 'mlflow' / 'mlflow.db'}")
        self.registry_uri = registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or self.tracking_uri
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import mlflow
            from mlflow import MlflowClient

            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.registry_uri)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    def version(self, alias: str, gated: bool = False) -> str | None:
        """The version an alias points to now, or None; with `gated`, only a version that passed its gates."""
        from mlflow.exceptions import MlflowException

        from ml_platform.core.registry import GATES_TAG

        try:
            found = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None
        if gated and (found.tags or {}).get(GATES_TAG) != "passed":
            return None
        return str(found.version)

    def previous_beside(self, champion: str | None, window_s: float) -> str | None:
        """`previous`, while `champion` is within `window_s` of its promotion (audit tag `last_promote`)."""
        from datetime import datetime, timezone

        if champion is None or window_s <= 0:
            return None
        promoted = self.client.get_model_version(self.name, champion).tags.get("last_promote")
        if promoted is None:
            return None
        if (datetime.now(timezone.utc) - datetime.fromisoformat(promoted)).total_seconds() > window_s:
            return None
        previous = self.version("previous")
        return previous if previous != champion else None

    def load(self, version: str) -> LoadedModel:
        import mlflow

        run_id = self.client.get_model_version(self.name, version).run_id
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_FILES,
                                                     tracking_uri=self.tracking_uri)
        return LoadedModel(Model.load(folder), version)


class FolderSource:
    """One model folder (model.txt + manifest.json), e.g. baked into an image; its version from the manifest."""

    def __init__(self, folder: str | Path, version: str | None = None):
        self.folder = Path(folder)
        self._version = version

    def version(self, alias: str, gated: bool = False) -> str | None:
        if alias != "champion":
            return None
        return self._version or str(Model.load(self.folder).manifest.get("version", "local"))

    def previous_beside(self, champion: str | None, window_s: float) -> str | None:
        return None  # one model, nothing to score beside it

    def load(self, version: str) -> LoadedModel:
        return LoadedModel(Model.load(self.folder), version)
