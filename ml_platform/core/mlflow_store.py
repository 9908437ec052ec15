"""One gateway to MLflow: where the store is, one client per store, the names of what a training run logs, and
"the model behind an alias or a version".

Why one module: the default store, the artifact names and "alias → version → run → model files → `Model`" used
to be written out separately in the Dagster wiring, the serving loader and the registry; a new default store or
a renamed artifact now changes here only. No Dagster here, and MLflow is imported only inside the functions that
talk to a store, so importing the names is free (an endpoint serving a model folder never loads MLflow).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_platform import settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from ml_platform.core.model import Model

TRACKING_URI_ENV, REGISTRY_URI_ENV = "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"

# The registry's vocabulary: aliases (never stages), and the version tag that says the offline gates passed.
CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
GATES_TAG = "gates"  # on a model version: "passed" or "failed", written once its evaluation has run

# What a training run logs, as paths inside the run: writers and readers use these names, never literals.
MODEL_FILES = "model_files"  # the platform model folder (model.txt + manifest.json)
SMOKE_ROWS = "smoke_rows.json"  # held-out rows every deployment must score exactly
REFERENCE_PROFILE = "reference_profile.json"  # the drift reference of the version's training rows
MODEL_CARD = "model_card.md"
GATE_RESULTS = "gates.json"
DATA_VERSIONS = "data_versions.json"
TUNING_TRIALS = "tuning_trials.json"
FEATURE_ATTRIBUTIONS = "feature_attributions.json"
SLICES = "slices.csv"
PLOTS = "plots"  # a folder: one PNG per plot, see `plot_artifact`


def plot_artifact(plot: str) -> str:
    """The run path of one evaluation plot (`plots/<plot>.png`)."""
    return f"{PLOTS}/{plot}.png"


# --- where the store is ----------------------------------------------------------------------------------------


def default_tracking_uri() -> str:
    """The platform's own store when nothing is configured: SQLite under ML_PLATFORM_HOME/mlflow. The folder is
    created because SQLite creates the database file but not its folder."""
    folder = settings.home() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def default_artifact_root(tracking_uri: str | None = None) -> str | None:
    """Where new experiments keep their artifacts when nothing is configured: a tracking server decides itself
    (None: its `--artifacts-destination`, uploaded and downloaded through the server, so no container shares a
    path with another); a local store keeps them in ML_PLATFORM_HOME/mlflow/artifacts."""
    if is_server(tracking_uri or resolve_uris()[0]):
        return None
    return (settings.home() / "mlflow" / "artifacts").as_uri()


def is_server(uri: str) -> bool:
    """Whether a tracking URI names a tracking server (http, https, or Databricks) rather than a local store."""
    return uri.split(":", 1)[0].lower() in ("http", "https", "databricks")


def resolve_uris(tracking_uri: str | None = None, registry_uri: str | None = None) -> tuple[str, str]:
    """(tracking URI, registry URI): each one given, else MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, else the
    platform's default store; the registry defaults to the tracking store.

    MLFLOW_REGISTRY_URI is the registry of the tracking store the environment names (MLFLOW_TRACKING_URI, else
    the default store), so a tracking URI given for another store keeps its own registry: `mlflow.set_registry_uri`
    exports that variable and nothing ever clears it, so it may be left over from a store used earlier in the
    process."""
    configured = os.environ.get(TRACKING_URI_ENV)
    tracking = tracking_uri or configured or default_tracking_uri()
    if not registry_uri:
        environment_registry = os.environ.get(REGISTRY_URI_ENV)
        if environment_registry and tracking == (configured or default_tracking_uri()):
            registry_uri = environment_registry
    return tracking, registry_uri or tracking


def client_for(tracking_uri: str | None = None, registry_uri: str | None = None) -> MlflowClient:
    """The one client of a store (URIs resolved as `resolve_uris` does). Cached, because building a client opens
    the store (and for SQLite checks its schema), which is slow. Leaves the process-wide URIs alone."""
    return _client(*resolve_uris(tracking_uri, registry_uri))


def use_store(tracking_uri: str | None = None, registry_uri: str | None = None) -> MlflowClient:
    """`client_for`, after pointing this process's MLflow helpers (`mlflow.start_run`, `log_*`,
    `register_model`, `runs:/` URIs) at the same store. Call it every time before using them, so a store used
    earlier in the process (another model, a test) never receives this model's runs or versions."""
    import mlflow

    tracking, registry = resolve_uris(tracking_uri, registry_uri)
    client = _client(tracking, registry)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    return client


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str, registry_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    _quiet()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def _quiet() -> None:
    """No download progress bars in logs (a user's explicit setting wins)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# --- writing a run in few calls ---------------------------------------------------------------------------------

# MLflow's limits for one log_batch request (mlflow.utils.validation): entities per request and per kind.
_BATCH_TOTAL, _BATCH_METRICS, _BATCH_PARAMS, _BATCH_TAGS = 1000, 1000, 100, 100


def active_run_id() -> str:
    """The id of the run this process logs to; the training and evaluation runs start it before logging."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: start one (mlflow.start_run) before logging to it")
    run_id: str = run.info.run_id
    return run_id


def log_batch(
    run_id: str,
    metrics: dict[str, float] | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    steps: list[Metric] | None = None,
    client: MlflowClient | None = None,
) -> int:
    """Metrics, params and tags of a run in as few `log_batch` requests as MLflow's limits allow (one for a
    training or evaluation run's scalars): each `log_metric`/`log_param`/`set_tag` call is a store round trip
    (a SQLite transaction, or an HTTP request to a tracking server). `steps` are extra `Metric` entities (a
    learning curve's rounds). Values are written as `mlflow.log_params` and `set_tags` write them (`str`).
    Returns the number of requests made."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = client or mlflow.MlflowClient()
    now = int(time.time() * 1000)
    pending_metrics = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()] + list(steps or [])
    pending_params = [Param(k, str(v)) for k, v in (params or {}).items()]
    pending_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    requests = 0
    while pending_metrics or pending_params or pending_tags:
        batch_params, pending_params = pending_params[:_BATCH_PARAMS], pending_params[_BATCH_PARAMS:]
        batch_tags, pending_tags = pending_tags[:_BATCH_TAGS], pending_tags[_BATCH_TAGS:]
        room = min(_BATCH_METRICS, _BATCH_TOTAL - len(batch_params) - len(batch_tags))
        batch_metrics, pending_metrics = pending_metrics[:room], pending_metrics[room:]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
        requests += 1
    return requests


# --- the model behind an alias or a version -------------------------------------------------------------------


def version_of_alias(client: MlflowClient, name: str, alias: str, gated: bool = False) -> str | None:
    """The version `alias` points to now, or None (no such model or alias). With `gated`, only a version whose
    offline gates passed: live traffic must never reach one that did not. A store that cannot be asked (a
    tracking server down, a refused login) raises: "no champion" and "cannot tell" are different answers."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in _ABSENT or (error.error_code == "PERMISSION_DENIED" and not _visible(client, name)):
            return None
        raise
    if gated and (found.tags or {}).get(GATES_TAG) != "passed":
        return None
    return str(found.version)


_ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no such registered model; no such alias


def _visible(client: MlflowClient, name: str) -> bool:
    """Whether a registered model exists as far as this client may see. A tracking server with basic-auth
    answers PERMISSION_DENIED, not "does not exist", for a model nobody has registered yet."""
    return bool(client.search_registered_models(f"name = '{name}'", max_results=1))


def run_of(client: MlflowClient, name: str, version: str) -> str | None:
    """The training run of a model version: where its model files, smoke rows and drift reference live."""
    return client.get_model_version(name, str(version)).run_id


def download_model_files(run_id: str, tracking_uri: str | None = None) -> Path:
    """The run's model folder on local disk (for a deployment that ships the folder itself)."""
    import mlflow

    _quiet()
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=MODEL_FILES, tracking_uri=resolve_uris(tracking_uri)[0]
        )
    )


# Models already in this process, by (tracking URI, run id): a run's model files never change once logged, so
# the evaluation step (in the same process as training, with the in-process executor) and a backfill's next
# week (whose champion is this week's candidate) reuse them instead of downloading and parsing them again.
_MODELS: collections.OrderedDict[tuple[str, str], Model] = collections.OrderedDict()
_MODELS_KEPT = 4
_MODELS_LOCK = threading.Lock()  # the endpoint loads models from a reload thread while requests are served


def remember_model(run_id: str, model: Model, tracking_uri: str | None = None) -> None:
    """Keep a run's model (as loaded from its logged files) for `load_model` in this process."""
    key = (resolve_uris(tracking_uri)[0], run_id)
    with _MODELS_LOCK:
        _MODELS[key] = model
        _MODELS.move_to_end(key)
        while len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)


def load_model(run_id: str, tracking_uri: str | None = None) -> Model:
    """The platform `Model` a run logged (native LightGBM text + JSON manifest; nothing unpickled); the one
    already in this process when there is one (see `remember_model`)."""
    from ml_platform.core.model import Model

    key = (resolve_uris(tracking_uri)[0], run_id)
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    model = Model.load(download_model_files(run_id, tracking_uri))
    remember_model(run_id, model, tracking_uri)
    return model


def load_version(client: MlflowClient, name: str, version: str) -> Model:
    """The `Model` of a registered version, read from the client's tracking store."""
    run_id = run_of(client, name, version)
    if run_id is None:
        raise ValueError(f"{name} version {version} has no training run to load its model from")
    return load_model(run_id, client.tracking_uri)


def load_json_artifact(run_id: str, name: str, tracking_uri: str | None = None) -> Any:
    """A JSON artifact of a run (e.g. `SMOKE_ROWS`, `REFERENCE_PROFILE`), from the given store rather than from
    whichever store the process last pointed MLflow at."""
    import mlflow

    _quiet()
    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=scratch, tracking_uri=resolve_uris(tracking_uri)[0]
        )
        return json.loads(Path(path).read_text(encoding="utf-8"))
