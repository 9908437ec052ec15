"""Where the serving process gets its models: the registry alias (`champion`, `challenger`) or a folder.

No Dagster here. MLflow is imported only when the registry is used (through `core.mlflow_store`, the one
gateway to MLflow), and a loaded model is plain `Model` (native LightGBM text + JSON manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ml_platform.core import mlflow_store
from ml_platform.core.model import Model

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class LoadedModel:
    model: Model
    version: str


class ModelSource(Protocol):
    """Where the endpoint asks which versions the aliases name, and loads them: the registry or a folder."""

    def version(self, alias: str, gated: bool = False) -> str | None: ...

    def previous_beside(self, champion: str | None, window_s: float) -> str | None: ...

    def load(self, version: str) -> LoadedModel: ...


class RegistrySource:
    """Models by alias from the MLflow registry (the store `mlflow_store.resolve_uris` names: the URIs given,
    else MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, else ML_PLATFORM_HOME/mlflow/mlflow.db)."""

    def __init__(self, name: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        self.name = name
        self.tracking_uri, self.registry_uri = mlflow_store.resolve_uris(tracking_uri, registry_uri)
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = mlflow_store.use_store(self.tracking_uri, self.registry_uri)
        return self._client

    def version(self, alias: str, gated: bool = False) -> str | None:
        """The version an alias points to now, or None; with `gated`, only a version that passed its gates."""
        return mlflow_store.version_of_alias(self.client, self.name, alias, gated)

    def previous_beside(self, champion: str | None, window_s: float) -> str | None:
        """The previous champion, to score beside `champion` while that one is within `window_s` of its promotion
        (audit tag `last_promote`): a rollback decision then compares both on the same live outcomes."""
        from datetime import datetime

        if champion is None or window_s <= 0:
            return None
        promoted = self.client.get_model_version(self.name, champion).tags.get("last_promote")
        if promoted is None:
            return None
        if (datetime.now(UTC) - datetime.fromisoformat(promoted)).total_seconds() > window_s:
            return None
        previous = self.version(mlflow_store.PREVIOUS)
        return previous if previous != champion else None

    def load(self, version: str) -> LoadedModel:
        return LoadedModel(mlflow_store.load_version(self.client, self.name, version), version)


class FolderSource:
    """One model folder (model.txt + manifest.json), e.g. baked into an image; its version from the manifest."""

    def __init__(self, folder: str | Path, version: str | None = None):
        self.folder = Path(folder)
        self._version = version

    def version(self, alias: str, gated: bool = False) -> str | None:
        if alias != mlflow_store.CHAMPION:
            return None
        return self._version or str(Model.load(self.folder).manifest.get("version", "local"))

    def previous_beside(self, champion: str | None, window_s: float) -> str | None:
        return None  # one model, nothing to score beside it

    def load(self, version: str) -> LoadedModel:
        return LoadedModel(Model.load(self.folder), version)
