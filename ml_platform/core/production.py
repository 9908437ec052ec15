"""Production, read-only: a client of its MLflow store once the store has answered, a version's model files
downloaded into a scratch folder, the `features` partitions its storage holds (`<storage>/<model>/features/<key>
.parquet`, as the Parquet IO manager lays them out) and their data versions, and partitions built again from the
source into a scratch store with the functions the `raw` and `features` assets run.

Shared by `ml-platform review` (a changed spec's candidate beside its champion) and `ml-platform reproduce` (a
registered version rebuilt from its recorded recipe); nothing here writes to the store or to its storage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_platform.core.data_versions import versions_by_day
from ml_platform.core.engine import LOCAL, Engine
from ml_platform.core.features import build_features, concat_partitions
from ml_platform.core.mlflow_store import CHAMPION, MODEL_FILES, is_server, run_of, version_of_alias
from ml_platform.core.model import Model
from ml_platform.settings import HOME_ENV
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from upath import UPath

    from ml_platform.core.training import TrainingResult

_PROBE_RETRIES = {  # a store that does not answer is reported in seconds, not after MLflow's minutes of retries
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # MLflow reads it as an integer
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class ProductionUnreachable(Exception):
    """The production tracking store, registry or storage cannot be read; the message names the URI or path."""


# --- the MLflow store -------------------------------------------------------------------------------------------


def read_only_client(tracking_uri: str, registry_uri: str, name: str) -> MlflowClient:
    """A client of the production store, once it has answered a read of the tracking store and the registry. A
    local store must exist already: MLflow would create an empty one where the path points."""
    from mlflow import MlflowClient

    for uri in dict.fromkeys((tracking_uri, registry_uri)):
        path = _local_store_path(uri)
        if path is not None and not path.exists():
            raise ProductionUnreachable(f"MLflow store {uri}: no such database or folder ({path})")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    with _environment(_PROBE_RETRIES):
        for uri, ask in (
            (tracking_uri, lambda: client.search_experiments(max_results=1)),
            (registry_uri, lambda: version_of_alias(client, name, CHAMPION)),
        ):
            try:
                ask()
            except Exception as error:  # whatever the store's failure (refused, timed out, denied), say where
                raise ProductionUnreachable(
                    f"MLflow {'tracking store' if uri == tracking_uri else 'registry'} {uri} cannot be read: "
                    f"{first_line(error)}"
                ) from error
    return client


def first_line(error: BaseException) -> str:
    """An error's type and the first line of its message (a store's errors run to pages)."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"


def _local_store_path(uri: str) -> Path | None:
    """The file or folder behind a local store URI (sqlite:///..., file:..., a bare path); None for a server."""
    if is_server(uri):
        return None
    scheme, _, rest = uri.partition(":")
    if scheme == "sqlite":
        path = rest.removeprefix("///").split("?")[0]
        return None if path in ("", ":memory:") else Path(path)
    if scheme == "file":
        return Path(rest.removeprefix("//"))
    if not rest or len(scheme) == 1:  # a bare path (or a Windows drive letter)
        return Path(uri)
    return None  # another database or scheme: asked, not checked on disk


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Environment variables set for a block and restored after it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def download_version(client: MlflowClient, name: str, version: str, target: Path) -> Model:
    """A registered version's model files, downloaded into `target` (never next to the production store)."""
    run_id = run_of(client, name, version)
    if run_id is None:
        raise ValueError(f"{name} v{version} has no training run to load its model from")
    try:
        local = client.download_artifacts(run_id, MODEL_FILES, str(target))
    except Exception as error:
        raise ProductionUnreachable(
            f"the artifacts of {name} v{version} (run {run_id}) at {client.tracking_uri} cannot be read: "
            f"{first_line(error)}"
        ) from error
    return Model.load(local)


def trained_days(model: Model) -> tuple[date, date]:
    """The first and last day a version's training set held (its manifest's window, else its data versions)."""
    window = model.manifest.get("window") or {}
    days = sorted(model.manifest.get("data_versions") or {})
    first, last = (
        window.get("first_day") or (days[0] if days else None),
        window.get("last_day") or (days[-1] if days else None),
    )
    if first is None or last is None:
        raise ValueError(f"{model.manifest.get('model')}: the version's manifest records no training window")
    return date.fromisoformat(first), date.fromisoformat(last)


def train_as_retrain(
    spec: ModelSpec,
    training_set: Any,
    extra_manifest: dict[str, Any] | None = None,
    engine: Engine = LOCAL,
) -> TrainingResult:
    """A stored training set (rows with their split; `engine`'s frame) trained as a retrain trains it: tuned first
    when the spec asks for it, with the same seeds and parameters."""
    from ml_platform.core.evaluation import score

    override = None
    if spec.training.tuning.trials:
        metric = spec.gate_metric
        override, _ = engine.tune(spec, training_set, lambda model, frame: score(model, frame, metric))
    return engine.train(spec, training_set, override, extra_manifest=extra_manifest)


# --- the stored partitions ---------------------------------------------------------------------------------------


def features_folder(storage_url: str, name: str) -> UPath:
    """`<storage>/<model>/features`, where the IO manager stores the feature partitions."""
    from upath import UPath

    root = UPath(storage_url)
    try:
        exists = root.exists()
    except Exception as error:
        raise ProductionUnreachable(f"storage {storage_url} cannot be read: {type(error).__name__}: {error}") from error
    if not exists:
        raise ProductionUnreachable(f"storage {storage_url}: no such folder")
    return root / name / "features"


def stored_keys(folder: UPath) -> list[str]:
    """The partition keys stored in a features folder (files, or folders written by the Dask engine); none when
    the folder does not exist (a model production has not built yet)."""
    if not folder.exists():
        return []
    return sorted(
        path.name.removesuffix(".parquet")
        for path in folder.iterdir()
        if path.name.endswith(".parquet") and not path.name.startswith(".")
    )


def read_partition(folder: UPath, key: str) -> pd.DataFrame:
    """One stored partition, read as the IO manager reads it."""
    from ml_platform.core.dask_frames import partition_files, read_file

    return concat_partitions([read_file(path) for path in partition_files(folder / f"{key}.parquet")])


def key_window(key: str, cadence: str) -> tuple[datetime, datetime]:
    """A partition key's time window [start, end) in naive UTC, as Dagster's time partitions name them."""
    if cadence == "hourly":
        start = datetime.strptime(key, "%Y-%m-%d-%H:%M")
        return start, start + timedelta(hours=1)
    start = datetime.fromisoformat(key)
    if cadence == "daily":
        return start, start + timedelta(days=1)
    if cadence == "weekly":
        return start, start + timedelta(days=7)
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, following


def window_partitions(cadence: str, stored: list[str], first: date, last: date) -> dict[str, tuple[datetime, datetime]]:
    """The data partitions of the days first..last, oldest first: every day for daily data (stored or not),
    else the stored partitions that overlap those days."""
    lo, hi = (
        datetime.combine(first, datetime.min.time()),
        datetime.combine(last + timedelta(days=1), datetime.min.time()),
    )
    if cadence == "daily":
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        return {day: key_window(day, cadence) for day in days}
    if cadence == "hourly" and not stored:
        hours = [lo + timedelta(hours=i) for i in range(int((hi - lo).total_seconds()) // 3600)]
        return {hour.strftime("%Y-%m-%d-%H:%M"): (hour, hour + timedelta(hours=1)) for hour in hours}
    windows = {key: key_window(key, cadence) for key in stored}
    return dict(sorted(((k, w) for k, w in windows.items() if w[1] > lo and w[0] < hi), key=lambda item: item[1][0]))


def unit(spec: ModelSpec) -> str:
    """What one data partition of the spec is, in the plural ("days")."""
    return {"hourly": "hours", "daily": "days", "weekly": "weeks", "monthly": "months"}[spec.partitions.cadence]


def stored_versions(stored: Mapping[str, pd.DataFrame], timestamp: str, key: str | None) -> dict[str, str]:
    """Each day's data version of the stored partitions, hashed as a retrain hashes its training set: the rows in
    time order (then by key), stable."""
    frames = [frame for frame in stored.values() if not frame.empty]
    if not frames:
        return {}
    frame = concat_partitions(frames)
    ordered = frame.sort_values([timestamp, *([key] if key else [])], kind="stable")
    return versions_by_day(ordered.reset_index(drop=True), timestamp)


# --- partitions built again from the source ---------------------------------------------------------------------


def rebuild_features(
    spec: ModelSpec,
    windows: Mapping[str, tuple[datetime, datetime]],
    scratch: Path,
    storage_url: str,
    notes: list[str],
) -> dict[str, pd.DataFrame]:
    """The partitions' features built from the source as the `raw` and `features` assets build them (raw stored
    as Parquet and read back, validated, featurized, each partition stored with its own levels), into
    `scratch`; read back as the training set would read them. Expectations the rebuilt raw data breaks are
    added to `notes` (production would have blocked those partitions)."""
    import numpy as np

    from ml_platform.core.schema import validate
    from ml_platform.core.sources import open_source

    keys = list(windows)
    source = open_source(spec, replay_pins(spec, scratch, storage_url))
    starts = np.array([np.datetime64(windows[k][0]) for k in keys], dtype="datetime64[ns]")
    raw = source.load(min(w[0] for w in windows.values()), max(w[1] for w in windows.values()))
    raw = round_trip(raw, scratch / "raw" / "window.parquet")
    report = validate(raw, spec.expectations, _partition_of(raw, spec.timestamp, keys, starts), keys)
    if not report.passed:
        notes.append(
            f"the rebuilt raw data breaks {len(report.failures)} expectation(s) of the spec (production would "
            "block these partitions): "
            + "; ".join(f"{f.column}: {f.expectation} ({f.count})" for f in report.failures[:5])
        )
    frame, _ = build_features(raw, spec)
    partition_of = _partition_of(frame, spec.timestamp, keys, starts)
    out = {}
    folder = scratch / "features"
    for key in keys:
        part = frame[(partition_of == key).to_numpy()].reset_index(drop=True)
        if part.empty:
            continue
        categorical = [str(n) for n, t in part.dtypes.items() if isinstance(t, pd.CategoricalDtype)]
        part = part.assign(**{n: part[n].cat.remove_unused_categories() for n in categorical})
        out[key] = round_trip(part, folder / f"{key}.parquet")
    return out


def _partition_of(frame: pd.DataFrame, timestamp: str, keys: list[str], starts: Any) -> pd.Series:
    import numpy as np

    position = np.searchsorted(starts, frame[timestamp].to_numpy(dtype="datetime64[ns]"), side="right") - 1
    return pd.Series(np.asarray(keys, dtype=object)[np.clip(position, 0, None)], index=frame.index)


def round_trip(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A frame written as the IO manager writes it and read back, so dtypes are what a stage reads."""
    from ml_platform.core.engine import write_parquet

    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(frame, path)
    return pd.read_parquet(path)


def replay_pins(spec: ModelSpec, scratch: Path, storage_url: str) -> Path:
    """Where a replayed source finds its pinned offset: a copy, in scratch, of the pin production keeps beside
    its storage (ML_PLATFORM_HOME/replay), so a rebuild replays the same days without writing a pin there."""
    pins = scratch / "replay"
    pins.mkdir(parents=True, exist_ok=True)
    homes = [Path(storage_url).parent] if "://" not in storage_url else []
    homes += [Path(os.environ[HOME_ENV])] if os.environ.get(HOME_ENV) else []
    for home in homes:
        production = home / "replay" / f"{spec.name}.json"
        if production.is_file() and not (pins / production.name).exists():
            (pins / production.name).write_bytes(production.read_bytes())
    return pins
