"""A registered version rebuilt from its recorded recipe, to show the same bytes come out.

The version's training run holds the recipe (`core.recipe`): the resolved spec, the model files whose manifest
names the window, the data version of each day, the parameters and the package versions. Reproducing reads it,
checks every stored `features` partition of the window against the data version recorded for its days, builds
the training set as the `training_set` asset builds it (stored as Parquet and read back), trains it as the
`model` asset trains it (on the version's engine) and compares: the model file's bytes, the manifest, and the
held-out metrics of both models on the same test rows.

Verdicts (and `ml-platform reproduce`'s exit status):
- identical (0): the same model bytes, the same manifest, the same held-out metrics;
- different (1): something differs and the diff says what: a stored partition whose content is not the one the
  version trained on (named, and the retrain is not run: its model could only differ), or after the retrain the
  parameters, rows, data versions or package versions of the manifest, the model bytes or held-out metrics;
- cannot (2): something the recipe needs is absent: the version, its run, an artifact (a version from before
  recipes were recorded), a partition of the window that is not stored, or the store or storage itself.

With `rebuild_data`, partitions that changed or are missing are built again from the source into a scratch
store (`core.production.rebuild_features`, the functions the `raw` and `features` assets run) and checked
again; when their content is the recorded one, the retrain goes on with them. Nothing is written to the
registry, the tracking store or production storage: artifacts are downloaded into `scratch`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_platform.core import training
from ml_platform.core.engine import DaskEngine, Engine, engine_named
from ml_platform.core.mlflow_store import MODEL_FILES, version_of_alias
from ml_platform.core.model import MODEL_FILE, Model
from ml_platform.core.production import (
    ProductionUnreachable,
    features_folder,
    first_line,
    read_only_client,
    read_partition,
    rebuild_features,
    stored_keys,
    stored_versions,
    train_as_retrain,
    trained_days,
    window_partitions,
)
from ml_platform.core.recipe import DERIVED_TAG, RESOLVED_SPEC, derived_digests
from ml_platform.core.training_set import SPLIT
from ml_platform.spec import ModelSpec, SpecError, load_spec

if TYPE_CHECKING:
    from mlflow import MlflowClient


class Verdict(StrEnum):
    IDENTICAL = "identical"
    DIFFERENT = "different"
    CANNOT = "cannot"


PACKAGES = "package_versions"  # the manifest's section of package versions
EXIT_CODES = {Verdict.IDENTICAL: 0, Verdict.DIFFERENT: 1, Verdict.CANNOT: 2}


@dataclass(frozen=True)
class PartitionChange:
    """A data partition of the window whose stored content is not what the version recorded for its days.
    `found` None: not stored; `rebuilt`: the content of the partition built again from the source (None: not
    rebuilt); `days` are the recorded days it covers (one, for daily partitions)."""

    partition: str
    days: tuple[str, ...]
    recorded: tuple[str | None, ...]  # the recorded data version of each of `days` (None: none recorded)
    found: tuple[str | None, ...] | None  # the stored content's version of each day (None: not stored)
    rebuilt: tuple[str | None, ...] | None = None

    @property
    def missing(self) -> bool:
        return self.found is None

    @property
    def restored(self) -> bool:
        """Built again from the source with the content the version trained on."""
        return self.rebuilt is not None and self.rebuilt == self.recorded

    def describe(self) -> str:
        state = "not stored" if self.missing else "stored content differs from the recorded data version"
        if self.rebuilt is not None:
            outcome = "matches it" if self.restored else "still differs"
            state += f"; rebuilt from the source, which {outcome}"
        return f"partition {self.partition}: {state}"


@dataclass(frozen=True)
class Difference:
    """One recorded value beside the reproduced one: `section` is the manifest's part (params, rows,
    data_versions, package_versions, window, fit, metrics, ...), "model" (the model file's sha256) or
    "held_out" (a metric on the test rows); `name` the entry within it."""

    section: str
    name: str
    recorded: Any
    reproduced: Any

    def describe(self) -> str:
        return f"{self.section}.{self.name}: recorded {self.recorded!r}, reproduced {self.reproduced!r}"


@dataclass(frozen=True)
class HeldOutMetric:
    """A metric of the recorded and the reproduced model on the same held-out test rows."""

    name: str
    recorded: float
    reproduced: float


@dataclass
class Reproduction:
    """What reproducing a version found."""

    model: str
    version: str | None  # None: the alias names no version
    verdict: Verdict
    reason: str  # one line: why this verdict
    run_id: str | None = None
    recorded_sha256: str | None = None
    reproduced_sha256: str | None = None
    partitions: list[PartitionChange] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    held_out: list[HeldOutMetric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value, "exit_code": self.exit_code}


class _Stop(Exception):
    """Reproducing ends early with this verdict and reason."""

    def __init__(self, verdict: Verdict, reason: str) -> None:
        super().__init__(reason)
        self.verdict, self.reason = verdict, reason


def reproduce(
    name: str,
    version: str,
    *,
    tracking_uri: str,
    registry_uri: str | None,
    storage_url: str,
    scratch: Path,
    rebuild_data: bool = False,
) -> Reproduction:
    """Reproduce `name`'s `version` ("3", or "@champion" for the version an alias points to) from its recipe
    and the stored partitions; see the module's docstring for the verdicts. Only reads production."""
    started = time.perf_counter()
    found = Reproduction(name, version.removeprefix("v"), Verdict.CANNOT, "")
    try:
        _reproduce(found, tracking_uri, registry_uri or tracking_uri, storage_url, Path(scratch), rebuild_data)
    except _Stop as stop:
        found.verdict, found.reason = stop.verdict, stop.reason
    except ProductionUnreachable as error:
        found.verdict, found.reason = Verdict.CANNOT, str(error)
    found.seconds = round(time.perf_counter() - started, 3)
    return found


def _reproduce(
    found: Reproduction, tracking_uri: str, registry_uri: str, storage_url: str, scratch: Path, rebuild: bool
) -> None:
    """Fills `found` step by step; raises `_Stop` where it ends early.
    Length: one linear story (version, recipe, data, retrain, comparison); each step is a helper below."""
    client = read_only_client(tracking_uri, registry_uri, found.model)
    found.version, found.run_id = _version_and_run(client, found.model, found.version or "")
    label = f"{found.model} v{found.version}"
    spec, recorded = _recipe(client, found.run_id, label, scratch / "recorded")
    found.recorded_sha256 = _sha256(scratch / "recorded" / MODEL_FILES / MODEL_FILE)
    found.notes += _code_notes(client, found.run_id, spec)
    if spec.training.tuning.trials:
        found.notes.append(
            f"{label} was tuned ({spec.training.tuning.trials} trials): a tuning timeout that ends at another trial "
            "than the recorded run's gives other parameters"
        )
    found.differences = _package_differences(recorded.manifest)  # reported whatever happens next
    windows, frames = _window(spec, recorded, storage_url, label)
    recorded_versions: dict[str, str] = recorded.manifest.get("data_versions") or {}
    if not recorded_versions:
        raise _Stop(Verdict.CANNOT, f"{label}: its manifest records no data versions to check the data against")
    found.partitions = _changes(spec, windows, frames, recorded_versions)
    if found.partitions and rebuild:
        rebuilt = rebuild_features(
            spec, {c.partition: windows[c.partition] for c in found.partitions}, scratch / "rebuilt", storage_url, []
        )
        frames = {**frames, **rebuilt}
        again = {c.partition: c for c in _changes(spec, windows, frames, recorded_versions)}
        found.partitions = [_with_rebuilt(c, again.get(c.partition)) for c in found.partitions]
    _stop_on_changes(found.partitions, label, rebuild)
    if found.partitions:
        found.notes.append(
            f"{len(found.partitions)} partition(s) rebuilt from the source in a scratch store with the recorded "
            f"content: {', '.join(c.partition for c in found.partitions)}"
        )
    reproduced, test = _retrain(spec, recorded, windows, frames, scratch, found.notes)
    folder = reproduced.save(scratch / "reproduced")
    found.reproduced_sha256 = _sha256(folder / MODEL_FILE)
    saved = Model.load(folder)  # the manifest as the files have it, to compare with the recorded files
    found.held_out = _held_out(recorded, saved, test)
    found.differences += _differences(found, recorded.manifest, saved.manifest)
    if found.differences:
        found.verdict = Verdict.DIFFERENT
        sections = ", ".join(dict.fromkeys(d.section for d in found.differences))
        found.reason = f"{label} reproduced with differences in: {sections}"
    else:
        found.verdict = Verdict.IDENTICAL
        found.reason = f"{label} reproduced byte-identical (model sha256 {found.reproduced_sha256[:16]})"


# --- the version and its recipe -------------------------------------------------------------------------------


def _version_and_run(client: MlflowClient, name: str, asked: str) -> tuple[str, str]:
    """The version number (an "@alias" resolved through the registry) and its training run."""
    from mlflow.exceptions import MlflowException

    version = asked
    if asked.startswith("@"):
        resolved = version_of_alias(client, name, asked[1:])
        if resolved is None:
            raise _Stop(Verdict.CANNOT, f"{name} has no alias {asked[1:]!r} (or no such registered model)")
        version = resolved
    try:
        registered = client.get_model_version(name, version)
    except MlflowException as error:
        raise _Stop(Verdict.CANNOT, f"{name} has no version {version}: {first_line(error)}") from None
    if not registered.run_id:
        raise _Stop(Verdict.CANNOT, f"{name} v{version} names no training run: there is no recipe to read")
    return str(registered.version), str(registered.run_id)


def _recipe(client: MlflowClient, run_id: str, label: str, target: Path) -> tuple[ModelSpec, Model]:
    """The recorded spec and the recorded model (files and manifest), downloaded into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    paths = {}
    for artifact in (RESOLVED_SPEC, MODEL_FILES):
        try:
            paths[artifact] = Path(client.download_artifacts(run_id, artifact, str(target)))
        except Exception as error:  # absent, or the artifact store cannot be read: nothing to rebuild from
            raise _Stop(
                Verdict.CANNOT,
                f"{label}: its run {run_id} has no artifact {artifact} that can be read ({first_line(error)})"
                + (
                    "; versions trained before recipes were recorded cannot be reproduced"
                    if artifact == RESOLVED_SPEC
                    else ""
                ),
            ) from None
    try:
        spec = load_spec(paths[RESOLVED_SPEC])
        recorded = Model.load(paths[MODEL_FILES])
    except (SpecError, OSError, ValueError, KeyError) as error:
        raise _Stop(Verdict.CANNOT, f"{label}: its recorded recipe cannot be read: {first_line(error)}") from None
    return spec, recorded


def _code_notes(client: MlflowClient, run_id: str, spec: ModelSpec) -> list[str]:
    """Where this checkout's derived-feature functions are not the source the version recorded (stored features
    carry the recorded ones; a rebuild from the source would run these)."""
    tags = client.get_run(run_id).data.tags
    notes = []
    for name, digest in derived_digests(spec).items():
        recorded = tags.get(DERIVED_TAG.format(name=name))
        if recorded is not None and recorded != (digest or "source not found"):
            notes.append(
                f"derived feature {name}: its function's source ({digest or 'not found'}) is not the recorded "
                f"one ({recorded})"
            )
    return notes


# --- the data -----------------------------------------------------------------------------------------------


def _window(
    spec: ModelSpec, recorded: Model, storage_url: str, label: str
) -> tuple[dict[str, tuple[datetime, datetime]], dict[str, pd.DataFrame]]:
    """The data partitions of the recorded window and those of them production stores."""
    try:
        first, last = trained_days(recorded)
    except ValueError as error:
        raise _Stop(Verdict.CANNOT, f"{label}: {error}") from None
    folder = features_folder(storage_url, spec.name)
    keys = stored_keys(folder)
    windows = window_partitions(spec.partitions.cadence, keys, first, last)
    return windows, {key: read_partition(folder, key) for key in windows if key in keys}


def _changes(
    spec: ModelSpec,
    windows: Mapping[str, tuple[datetime, datetime]],
    frames: Mapping[str, pd.DataFrame],
    recorded: Mapping[str, str],
) -> list[PartitionChange]:
    """Every partition of the window that is not stored, or whose days' content is not the recorded one."""
    found = stored_versions(frames, spec.timestamp, spec.key)
    changes = []
    for key, (start, end) in windows.items():
        days = tuple(d for d in _days(start, end) if d in recorded or d in found)
        before = tuple(recorded.get(d) for d in days)
        now = tuple(found.get(d) for d in days)
        if key not in frames:
            changes.append(PartitionChange(key, days, before, None))
        elif now != before:
            changes.append(PartitionChange(key, days, before, now))
    return changes


def _days(start: datetime, end: datetime) -> list[str]:
    """The ISO days a partition's window [start, end) touches."""
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _with_rebuilt(change: PartitionChange, after: PartitionChange | None) -> PartitionChange:
    """The change, with the content of its partition as built again from the source."""
    rebuilt = change.recorded if after is None else (after.found or tuple(None for _ in change.days))
    return PartitionChange(change.partition, change.days, change.recorded, change.found, rebuilt)


def _stop_on_changes(changes: list[PartitionChange], label: str, rebuild: bool) -> None:
    """Partitions that still are not what the version trained on end it here: missing ones as "cannot",
    changed ones as "different", each named."""
    open_ = [c for c in changes if not c.restored]
    if not open_:
        return
    named = "; ".join(c.describe() for c in open_)
    hint = "" if rebuild else " (--rebuild-data builds them again from the source into a scratch store)"
    if any(c.missing and not any(c.rebuilt or ()) for c in open_):  # not stored, and no rows from the source
        raise _Stop(Verdict.CANNOT, f"{label}: the window's data is not all stored: {named}{hint}")
    raise _Stop(Verdict.DIFFERENT, f"{label}: the data is not what the version trained on: {named}{hint}")


# --- the retrain and the comparison ----------------------------------------------------------------------------


def _retrain(
    spec: ModelSpec,
    recorded: Model,
    windows: Mapping[str, tuple[datetime, datetime]],
    frames: Mapping[str, pd.DataFrame],
    scratch: Path,
    notes: list[str],
) -> tuple[Model, pd.DataFrame]:
    """The model trained as the version's retrain trained it, on its engine, and the held-out test rows: the
    window's partitions stored one file each, the training set built from them, stored and read back as the
    `training_set` asset does, then trained as the `model` asset trains it."""
    from upath import UPath

    folder = scratch / "features"
    folder.mkdir(parents=True, exist_ok=True)
    for key in windows:
        frames[key].to_parquet(folder / f"{key}.parquet", index=False)
    written = scratch / "training_set.parquet"
    extra = {"partition": recorded.manifest["partition"]} if "partition" in recorded.manifest else None
    with _engine_of(spec, recorded, notes) as engine:
        try:
            features = engine.load([UPath(folder / f"{key}.parquet") for key in windows], list(windows))
            built = engine.build_training_set(features, spec, dict(windows)).frame
            engine.store(built, UPath(written))
            training_set = engine.load([UPath(written)], [None])
            result = train_as_retrain(spec, training_set, extra, engine)
        except training.TrainingError as error:
            raise _Stop(Verdict.CANNOT, f"{spec.name}: the recorded window cannot be trained: {error}") from None
        result.model.manifest["data_versions"] = engine.versions(training_set, spec.timestamp)
    frame = pd.read_parquet(written)  # a Dask engine's part files, in order
    test = frame[frame[SPLIT] == "test"].drop(columns=SPLIT).reset_index(drop=True)
    return result.model, test


@contextlib.contextmanager
def _engine_of(spec: ModelSpec, recorded: Model, notes: list[str]) -> Iterator[Engine]:
    """The version's engine. A Dask version's computes on a local cluster of the recorded number of workers (the
    same rows on the same number of workers give the same model bytes), or on the scheduler named by
    ML_PLATFORM_DASK_ADDRESS (noted when its number of workers is not the recorded one); closed after."""
    if spec.training.engine != DaskEngine.name:
        yield engine_named(spec.training.engine)
        return
    from ml_platform.core import dask_cluster

    recorded_workers = int((recorded.manifest.get("engine") or {}).get("workers") or 0) or None
    settings = replace(dask_cluster.ClusterSettings.from_env(), n_workers=recorded_workers)
    client = dask_cluster.connect(settings)
    try:
        workers = len(dask_cluster.worker_memory(client))
        if workers != recorded_workers:
            notes.append(
                f"retrained on {workers} Dask worker(s) where the version was trained on {recorded_workers}: "
                "LightGBM sums its histograms worker by worker, so the model bytes may differ"
            )
        yield engine_named(spec.training.engine, connect=lambda: client)
    finally:
        client.close()


def _held_out(recorded: Model, reproduced: Model, test: pd.DataFrame) -> list[HeldOutMetric]:
    from ml_platform.core.evaluation import held_out, task_metrics

    def metrics(model: Model) -> dict[str, float]:
        y, predictions = held_out(model, test, model.predict(test))
        return task_metrics(model.task, y, predictions, model.classes)

    before, after = metrics(recorded), metrics(reproduced)
    return [HeldOutMetric(name, before[name], after[name]) for name in before if name in after]


def _differences(found: Reproduction, recorded: Mapping[str, Any], reproduced: Mapping[str, Any]) -> list[Difference]:
    """The model bytes, every manifest entry (one level into its sections: params, rows, data versions ...) and
    the held-out metrics, where the recorded and the reproduced differ (package versions: `_package_differences`)."""
    out = []
    if found.recorded_sha256 != found.reproduced_sha256:
        out.append(Difference("model", "sha256", found.recorded_sha256, found.reproduced_sha256))
    for section in dict.fromkeys([*recorded, *reproduced]):
        before, after = recorded.get(section), reproduced.get(section)
        if section == PACKAGES or _same(before, after):
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            out += [
                Difference(section, str(k), before.get(k), after.get(k))
                for k in dict.fromkeys([*before, *after])
                if not _same(before.get(k), after.get(k))
            ]
        else:
            out.append(Difference(section, "", before, after))
    out += [
        Difference("held_out", m.name, m.recorded, m.reproduced) for m in found.held_out if m.recorded != m.reproduced
    ]
    return out


def _package_differences(recorded: Mapping[str, Any]) -> list[Difference]:
    """Each package whose recorded version is not the installed one (the version a retrain now records)."""
    installed = training.package_versions()
    before: dict[str, str] = recorded.get(PACKAGES) or {}
    return [
        Difference(PACKAGES, name, before.get(name), installed.get(name))
        for name in dict.fromkeys([*before, *installed])
        if before.get(name) != installed.get(name)
    ]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["Difference", "HeldOutMetric", "PartitionChange", "Reproduction", "Verdict", "reproduce"]
