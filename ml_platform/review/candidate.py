"""A changed spec's model trained and scored beside its champion, reading production and never writing to it.

The champion's manifest says which days it trained on and the data version of each; the stored `features`
partitions of those days are read from production storage and hash-checked against those versions (a day that
changed since is named, and the review goes on with what is stored). When the change touches the data layer
(the features table the spec describes is not the stored one), the window's features are rebuilt from the source
into the scratch folder with the functions the `raw` and `features` assets run (as they are for a model production
has no features of yet, on the newest days its source has). The candidate is trained with the local engine in
memory, both models are scored on the candidate's held-out test days, and the spec's gates judge the result.
Nothing is logged to MLflow: the registry is only asked, the champion's files are downloaded into the scratch
folder.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_platform.core.data_versions import content_hash
from ml_platform.core.evaluation import attributions, evaluate, fairness_gap, slice_metrics
from ml_platform.core.features import concat_partitions, feature_columns
from ml_platform.core.gates import GateResult, run_gates
from ml_platform.core.holdout import Holdout
from ml_platform.core.mlflow_store import CHAMPION, version_of_alias
from ml_platform.core.model import Model
from ml_platform.core.production import (
    ProductionUnreachable,
    download_version,
    features_folder,
    key_window,
    read_only_client,
    read_partition,
    rebuild_features,
    replay_pins,
    stored_keys,
    stored_versions,
    train_as_retrain,
    trained_days,
    unit,
    window_partitions,
)
from ml_platform.core.training_set import build_training_set
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient

TOP_MOVES = 10  # importance moves kept, largest first


@dataclass(frozen=True)
class MetricRow:
    """One held-out metric of both models on the same rows (champion None: no champion)."""

    name: str
    champion: float | None
    candidate: float
    delta: float | None  # candidate - champion


@dataclass(frozen=True)
class SliceRow:
    """The gate metric on one level of a sliced column, for both models on the same rows."""

    column: str
    level: str
    rows: int
    metric: str
    champion: float | None
    candidate: float
    delta: float | None


@dataclass(frozen=True)
class FairnessGap:
    """The gate metric's largest gap across the levels of the sensitive group, per model."""

    group: str
    metric: str
    candidate: float
    champion: float | None
    best: str  # the candidate's best and worst level
    worst: str


@dataclass(frozen=True)
class ImportanceMove:
    """A feature's share of the total mean |SHAP contribution| on the held-out rows (None: not a feature)."""

    feature: str
    champion: float | None
    candidate: float | None

    @property
    def move(self) -> float:
        return (self.candidate or 0.0) - (self.champion or 0.0)


@dataclass
class CandidateReview:
    """The verdict on a changed spec: its model beside the champion on the same held-out days, and the gates."""

    model: str
    champion_version: str | None  # None: no champion yet, the candidate alone and absolute gates only
    days: tuple[str, str]  # first and last day of the window the candidate was trained and scored on
    data_notes: list[str]
    metrics: list[MetricRow]  # the gate metric first, then the task's other metrics
    slices: list[SliceRow]
    fairness: FairnessGap | None
    gates: list[GateResult]
    importance_moves: list[ImportanceMove]  # largest moves first, at most TOP_MOVES
    plots: dict[str, bytes]  # the candidate's PNGs by name
    features: list[str]  # the candidate's features, as its model uses them
    test_days: tuple[str, str]  # the held-out days both models were scored on
    seconds: float

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)


def review_candidate(
    head: ModelSpec, *, tracking_uri: str, registry_uri: str | None, storage_url: str, scratch: Path
) -> CandidateReview:
    """Train `head`'s model on its champion's days (the newest stored window without a champion), score both on
    the same held-out days and run the gates. Production is only read; everything written goes under `scratch`.

    Length: one linear story (champion, data, training, scoring); each step is a helper below.
    """
    started = time.perf_counter()
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    client = read_only_client(tracking_uri, registry_uri or tracking_uri, head.name)
    folder = features_folder(storage_url, head.name)
    keys = stored_keys(folder)
    version = version_of_alias(client, head.name, CHAMPION)
    champion = _champion(client, head.name, version, scratch) if version else None
    notes: list[str] = []
    if champion is not None and not keys:
        raise ProductionUnreachable(
            f"storage {storage_url}: no features of {head.name} under {folder}, though champion v{version} "
            "trained on them"
        )
    if champion is not None:
        first, last = trained_days(champion)
    elif keys:
        first, last = _newest_window(head, keys)
    else:
        first, last = _source_window(head, scratch, storage_url)
    windows = window_partitions(head.partitions.cadence, keys, first, last)
    stored = {key: read_partition(folder, key) for key in windows if key in keys}
    recorded = champion.manifest.get("data_versions", {}) if champion is not None else {}
    if champion is not None:
        notes += _version_notes(stored, champion.manifest, recorded)
    if not keys:
        frames = rebuild_features(head, windows, scratch, storage_url, notes)
        notes.append(
            f"features built from the source in a scratch store for {len(frames)} {unit(head)} (production "
            f"stores no features of {head.name} yet)"
        )
    elif (change := _data_layer_change(head, champion, stored, recorded, scratch, storage_url)) is not None:
        frames = rebuild_features(head, windows, scratch, storage_url, notes)
        notes.append(
            f"features rebuilt from the source in a scratch store for {len(frames)} "
            f"{unit(head)} (the change touches the data layer: {change})"
        )
    else:
        missing = [key for key in windows if key not in stored]
        if missing:
            notes.append(f"features {', '.join(missing[:7])}: not stored (the window is evaluated without them)")
        frames = stored
    features = concat_partitions([frames[key] for key in windows if key in frames])
    training_set = build_training_set(features, head, {k: v for k, v in windows.items() if k in frames})
    candidate = _train(head, training_set.frame, notes)
    holdout = Holdout.of_frame(training_set.frame, candidate)
    test = holdout.test
    if champion is not None:
        test = _with_champion_columns(test, champion, stored, notes)
    metric = head.gate_metric
    group = head.gates.fairness.group if head.gates.fairness else None
    result = evaluate(candidate, holdout.train, test, metric, head.gates.slices, group, champion)
    gates = run_gates(result, head.gates)
    slices, fairness = _slices(head, candidate, champion, test, result, metric, group)
    stamps = test[head.timestamp]
    return CandidateReview(
        model=head.name,
        champion_version=version if champion is not None else None,
        days=(first.isoformat(), last.isoformat()),
        data_notes=notes,
        metrics=_metric_rows(metric, result.metrics, result.champion),
        slices=slices,
        fairness=fairness,
        gates=gates,
        importance_moves=_importance_moves(result.attributions, champion, test),
        plots={name: base64.b64decode(png) for name, png in result.plots.items()},
        features=list(candidate.encoder.names),
        test_days=(str(stamps.min().date()), str(stamps.max().date())),
        seconds=time.perf_counter() - started,
    )


def _train(head: ModelSpec, training_set: pd.DataFrame, notes: list[str]) -> Model:
    """The candidate as a retrain would train it with the local engine: tuned first when the spec asks for it."""
    if head.training.engine != "local":
        notes.append(f"the candidate was trained with the local engine (the spec asks for {head.training.engine})")
    return train_as_retrain(head, training_set).model


def _champion(client: MlflowClient, name: str, version: str, scratch: Path) -> Model:
    """The champion's model files, downloaded into the scratch folder (never next to the production store)."""
    return download_version(client, name, version, scratch / "champion" / f"v{version}")


# --- which partitions -------------------------------------------------------------------------------------------


def _newest_window(head: ModelSpec, stored: list[str]) -> tuple[date, date]:
    """Without a champion: the `training.window_days` days that end with the newest stored partition."""
    ends = [key_window(key, head.partitions.cadence)[1] for key in stored]
    last = (max(ends) - timedelta(microseconds=1)).date()
    return last - timedelta(days=head.training.window_days - 1), last


def _source_window(head: ModelSpec, scratch: Path, storage_url: str) -> tuple[date, date]:
    """A model production has no features of: the `training.window_days` days that end yesterday (UTC), or with
    the last day the spec's partitions or a replayed source have."""
    from ml_platform.core.sources import open_source

    source = open_source(head, replay_pins(head, scratch, storage_url))
    ends = [datetime.now(UTC).date() - timedelta(days=1)]
    ends += [source.replay.last_day] if source.replay is not None else []
    ends += [head.partitions.end] if head.partitions.end is not None else []
    if head.partitions.cadence not in ("daily", "hourly"):
        raise ValueError(
            f"{head.name}: production stores no features of it and {head.partitions.cadence} partitions are not "
            "rebuilt for a review; materialize its features first"
        )
    last = min(ends)
    return last - timedelta(days=head.training.window_days - 1), last


# --- the data the champion trained on ----------------------------------------------------------------------------


def _version_notes(
    stored: Mapping[str, pd.DataFrame], manifest: Mapping[str, Any], recorded: Mapping[str, str]
) -> list[str]:
    """A note for every day whose stored features no longer match the version the champion recorded."""
    if not recorded:
        return ["the champion recorded no data versions: the stored features could not be checked against them"]
    found = stored_versions(stored, manifest["timestamp"], manifest.get("key"))
    notes = []
    for day in sorted(set(recorded) | set(found)):
        if day not in found:
            notes.append(f"features {day}: no longer stored (the champion trained on it)")
        elif day not in recorded:
            notes.append(f"features {day}: stored rows the champion did not train on (evaluated on what is stored)")
        elif found[day] != recorded[day]:
            notes.append(
                f"features {day}: stored data no longer matches the champion's recorded data version "
                "(evaluated on what is stored)"
            )
    return notes


def _data_layer_change(
    head: ModelSpec,
    champion: Model | None,
    stored: Mapping[str, pd.DataFrame],
    recorded: Mapping[str, str],
    scratch: Path,
    storage_url: str,
) -> str | None:
    """Why the stored features are not what `head` would build (None: they are). The same spec digest means
    nothing changed; otherwise the stored columns are compared with the spec's features table, and one stored
    partition (one the champion's recorded version vouches for, when there is one) is built again from the
    source with `head` and hashed: any change the features stage depends on (source, target, derived
    functions, ...) shows there."""
    if champion is not None and champion.manifest.get("spec_digest") == head.digest:
        return None
    if not stored:
        return None
    columns = [str(c) for c in next(iter(stored.values())).columns]
    expected = feature_columns(head)
    if columns != expected:
        added = [c for c in expected if c not in columns]
        removed = [c for c in columns if c not in expected]
        parts = [f"adds {', '.join(added)}" if added else "", f"removes {', '.join(removed)}" if removed else ""]
        return "the features table " + ("; ".join(p for p in parts if p) or "reorders its columns")
    probe = _probe_key(stored, champion, recorded)
    window = key_window(probe, head.partitions.cadence)
    rebuilt = rebuild_features(head, {probe: window}, scratch / "probe", storage_url, [])
    if content_hash(rebuilt[probe]) != content_hash(stored[probe]):
        return f"{head.name}/features of {probe} built from the source with this spec differ from the stored ones"
    return None


def _probe_key(stored: Mapping[str, pd.DataFrame], champion: Model | None, recorded: Mapping[str, str]) -> str:
    """The newest stored partition whose content the champion's recorded version vouches for (daily data), else
    the newest stored one."""
    if champion is not None and recorded:
        found = stored_versions(stored, champion.manifest["timestamp"], champion.manifest.get("key"))
        vouched = [key for key in stored if key in recorded and found.get(key) == recorded[key]]
        if vouched:
            return vouched[-1]
    return list(stored)[-1]


def _with_champion_columns(
    test: pd.DataFrame, champion: Model, stored: Mapping[str, pd.DataFrame], notes: list[str]
) -> pd.DataFrame:
    """The held-out rows with the champion's features the head spec dropped, joined by key from the stored
    features, so the champion is scored on the rows it would have seen."""
    needed = [*champion.encoder.names, champion.manifest["target"]]
    missing = [name for name in dict.fromkeys(needed) if name not in test.columns]
    key = champion.manifest.get("key")
    if not missing:
        return test
    if not key or key not in test.columns or not stored:
        raise ValueError(
            f"the champion needs {', '.join(missing)}, which the head spec's features no longer have, and without a "
            "key the stored values cannot be joined to the held-out rows"
        )
    frames = [frame[[key, *[m for m in missing if m in frame.columns]]] for frame in stored.values()]
    notes.append(f"the champion was scored with {', '.join(missing)} from the stored features (the change drops them)")
    return test.merge(concat_partitions(frames).drop_duplicates(key), on=key, how="left")


# --- the records ----------------------------------------------------------------------------------------------


def _metric_rows(metric: str, candidate: Mapping[str, float], champion: Mapping[str, float] | None) -> list[MetricRow]:
    names = [metric, *[name for name in candidate if name != metric]] if metric in candidate else list(candidate)
    rows = []
    for name in names:
        old = (champion or {}).get(name)
        rows.append(MetricRow(name, old, candidate[name], None if old is None else candidate[name] - old))
    return rows


def _slices(
    head: ModelSpec,
    candidate: Model,
    champion: Model | None,
    test: pd.DataFrame,
    result: Any,
    metric: str,
    group: str | None,
) -> tuple[list[SliceRow], FairnessGap | None]:
    """Both models' metric per slice level and the sensitive group's gap, from the same held-out rows."""
    columns = list(dict.fromkeys([*head.gates.slices, *([group] if group else [])]))
    old = (
        slice_metrics(champion, test, champion.predict(test), columns, metric)
        if champion is not None and columns
        else None
    )
    previous = {} if old is None else {(r["column"], r["level"]): float(r[metric]) for _, r in old.iterrows()}
    rows = []
    for _, row in result.slices.iterrows():
        value, before = float(row[metric]), previous.get((row["column"], row["level"]))
        rows.append(
            SliceRow(
                str(row["column"]),
                str(row["level"]),
                int(row["rows"]),
                metric,
                before,
                value,
                None if before is None else value - before,
            )
        )
    gap = result.fairness
    if gap is None or group is None:
        return rows, None
    champion_gap = fairness_gap(old, group, metric) if old is not None else None
    return rows, FairnessGap(
        group,
        metric,
        float(gap["gap"]),
        float(champion_gap["gap"]) if champion_gap else None,
        gap["best"],
        gap["worst"],
    )


def _importance_moves(candidate: pd.Series, champion: Model | None, test: pd.DataFrame) -> list[ImportanceMove]:
    """The features whose share of the attributions moved most between the champion and the candidate."""
    new = _shares(candidate)
    old = _shares(attributions(champion, test)) if champion is not None else {}
    moves = [ImportanceMove(name, old.get(name), new.get(name)) for name in dict.fromkeys([*new, *old])]
    return sorted(moves, key=lambda m: -abs(m.move))[:TOP_MOVES]


def _shares(importance: pd.Series) -> dict[str, float]:
    total = float(importance.sum())
    return {str(name): (float(value) / total if total > 0 else 0.0) for name, value in importance.items()}
