"""Training on a Dask cluster (`training.engine: dask`): from the stored features to the booster, the window's
rows stay in partitions on the workers; the step's process receives per-partition summaries and a bounded sample.

- **Training set**: each stored partition is sorted and tagged with its split on the workers; the split days,
  data versions and row counts come back as small per-partition results.
- **Number of rounds**: lightgbm.dask has no early stopping, and its own validation scores cover only each
  worker's share of the validation days. So a first model trains on the training days for `num_boost_round`
  rounds; the workers score every validation row after each round and return per-round sums (log loss, a
  2,048-bin score histogram per class for the AUC, errors); LightGBM's early-stopping rule is replayed on
  those curves (`early_stopping_round`). The validation metrics are that model's at the chosen round, on
  every validation row.
- **Final model**: with `refit`, the data-parallel fit (`dask_fit`) on every row of the training and validation
  days with the chosen rounds; without, the first model cut at the chosen round. The categorical levels are those of all the
  fitted rows (collected from the workers); the booster is the same native text model with the same manifest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from ml_platform.core.dask_cluster import killed_workers_explained, worker_memory, workers_of
from ml_platform.core.dask_fit import LABEL, codes, fit_on_workers
from ml_platform.core.dask_frames import StoredPartitions, per_partition
from ml_platform.core.data_versions import content_hash, versions_by_day, versions_by_partition
from ml_platform.core.evaluation import encoded_target, task_metrics
from ml_platform.core.labels import UNKNOWN, Labels, positives
from ml_platform.core.model import FeatureEncoder, Model
from ml_platform.core.training import (
    TrainingError,
    TrainingResult,
    classes_of,
    early_stopping_round,
    labels_left_out,
    lightgbm_params,
    manifest_of,
    split_days,
)
from ml_platform.core.training_set import SPLIT, TrainingSet, check_coverage, windows_of
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

BINS = 2048  # score histogram resolution of the validation AUC per round


def build_training_set_on_dask(
    stored: StoredPartitions, spec: ModelSpec, partitions: Sequence[str] | Mapping[str, tuple[datetime, datetime]]
) -> TrainingSet:
    """`build_training_set` on the window's stored feature partitions, on the workers."""
    windows = windows_of(partitions)
    versions: dict[str, str] = {}
    features = stored.frame
    if features is not None:
        for part in killed_workers_explained(per_partition, features, versions_by_partition, spec.timestamp, windows):
            versions.update(part)
    check_coverage(spec, windows, versions)
    days = sorted(set().union(*per_partition(features, _days_of, spec.timestamp)))
    valid_start, test_start = split_days(days, spec)
    meta = features._meta.assign(**{SPLIT: pd.Series(dtype=object)})
    frame = features.map_partitions(_with_split, spec.timestamp, spec.key, valid_start, test_start, meta=meta)
    frame = frame.persist()
    return TrainingSet(frame, split_summary(frame, spec), versions)


def _days_of(part: pd.DataFrame, timestamp: str) -> set[pd.Timestamp]:
    return set(part[timestamp].dt.normalize().unique()) if len(part) else set()


def _with_split(
    part: pd.DataFrame, timestamp: str, key: str | None, valid_start: np.datetime64, test_start: np.datetime64
) -> pd.DataFrame:
    """A partition in time order (then key, as the local engine sorts the window) with each row's split."""
    part = part.sort_values([timestamp, *([key] if key else [])], kind="stable").reset_index(drop=True)
    day = part[timestamp].dt.normalize()
    return part.assign(**{SPLIT: np.where(day < valid_start, "train", np.where(day < test_start, "valid", "test"))})


def split_summary(frame: dd.DataFrame, spec: ModelSpec) -> dict[str, dict[str, Any]]:
    """`Split.summary` of a Dask training set: rows, first and last day, target balance per split."""
    merged: dict[str, dict[str, Any]] = {}
    for part in per_partition(frame, _split_stats, spec.timestamp, spec.target.name, spec.task, spec.target.positive):
        for split, stats in part.items():
            into = merged.setdefault(split, {"rows": 0, "first": None, "last": None, "sum": 0.0, "classes": {}})
            into["rows"] += stats["rows"]
            into["sum"] += stats["sum"]
            into["first"] = min(filter(None, (into["first"], stats["first"])))
            into["last"] = max(filter(None, (into["last"], stats["last"])))
            for label, count in stats["classes"].items():
                into["classes"][label] = into["classes"].get(label, 0) + count
    out = {}
    for split in ("train", "valid", "test"):
        stats = merged.get(split, {"rows": 0, "first": None, "last": None, "sum": 0.0, "classes": {}})
        info: dict[str, Any] = {
            "rows": stats["rows"],
            "first_day": _day(stats["first"]),
            "last_day": _day(stats["last"]),
        }
        if spec.task == "binary":
            info["positive_rate"] = round(stats["sum"] / stats["rows"], 4) if stats["rows"] else None
        elif spec.task == "regression":
            info["target_mean"] = round(stats["sum"] / stats["rows"], 4) if stats["rows"] else None
        else:
            info["classes"] = dict(sorted(stats["classes"].items(), key=lambda item: -item[1]))
        out[split] = info
    return out


def _day(stamp: pd.Timestamp | None) -> str | None:
    return str(pd.Timestamp(stamp).date()) if stamp is not None else None


def _split_stats(part: pd.DataFrame, timestamp: str, target: str, task: str, positive: Any = None) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for split, rows in part.groupby(SPLIT, sort=False):
        values = positives(rows[target], positive) if task == "binary" else rows[target]
        out[str(split)] = {
            "rows": len(rows),
            "first": rows[timestamp].min(),
            "last": rows[timestamp].max(),
            "sum": float(values.sum()) if task != "multiclass" else 0.0,
            "classes": rows[target].value_counts().to_dict() if task == "multiclass" else {},
        }
    return out


def versions_on_dask(stored: StoredPartitions, timestamp: str) -> dict[str, str]:
    """Each day's data version of a stored Dask training set. A day split over several stored partitions
    (hourly data) gets one version of its parts' versions."""
    parts: dict[str, list[str]] = {}
    frame = stored.frame.drop(columns=SPLIT, errors="ignore")
    for versions in killed_workers_explained(per_partition, frame, versions_by_day, timestamp):
        for day, version in versions.items():
            parts.setdefault(day, []).append(version)
    return {day: v[0] if len(v) == 1 else content_hash(pd.DataFrame({"v": v})) for day, v in sorted(parts.items())}


def train_on_dask(
    spec: ModelSpec, stored: StoredPartitions, client: Client, extra_manifest: dict[str, Any] | None = None
) -> TrainingResult:
    """The model of a stored Dask training set, trained on the workers (see the module's docstring)."""
    started = time.perf_counter()
    frame, refit, training = stored.frame, spec.training.refit, spec.training
    summary = split_summary(frame, spec)
    splits = ["train", "valid"] if refit else ["train"]
    encoder, classes, left_out = _encoder_and_classes(frame, spec, splits)
    params = {**lightgbm_params(spec, classes), "num_threads": _threads(client)}
    first = fit_on_workers(
        client, spec.target.name, params, training.num_boost_round, frame[frame[SPLIT] == "train"], encoder, classes
    )
    valid_rows = frame[frame[SPLIT] == "valid"]
    curve = _validation_curve(valid_rows, first, encoder, spec, classes)
    rounds = early_stopping_round(curve, training.early_stopping_rounds)
    stopped = lgb.Booster(model_str=first.model_to_string(num_iteration=rounds))
    rows = {k: summary[k]["rows"] - left_out.get(k, 0) for k in ("train", "valid", "test")}
    fit_rows = sum(rows[s] for s in splits)
    fit = {
        "refit": refit,
        "splits": splits,
        "rows": fit_rows,
        "first_day": summary["train"]["first_day"],
        "last_day": summary[splits[-1]]["last_day"],
        "rounds": rounds,
        "rounds_chosen_by": f"early stopping on the validation days ({summary['valid']['rows']} rows), "
        "replayed on per-round validation metrics computed by the Dask workers",
        "valid_metrics_from": (
            "the early-stopping model, trained on the training days only (the final model has seen the validation days)"
        )
        if refit
        else "the final model",
    }
    workers = len(worker_memory(client))
    manifest = manifest_of(
        spec,
        classes,
        params,
        rows,
        {"first_day": summary["train"]["first_day"], "last_day": summary["test"]["last_day"]},
        fit,
        encoder.names,
        rounds,
        {**(extra_manifest or {}), **labels_left_out(left_out), "engine": {"name": "dask", "workers": workers}},
    )
    manifest["metrics"] = {
        f"valid_{k}": v for k, v in _metrics_of(valid_rows, Model(stopped, encoder, manifest), spec).items()
    }
    booster = (
        fit_on_workers(client, spec.target.name, params, rounds, frame[frame[SPLIT].isin(splits)], encoder, classes)
        if refit
        else stopped
    )
    logged = {
        **params,
        "engine": "dask",
        "dask_workers": workers,
        "refit": refit,
        "fit_rows": fit_rows,
        "fit_window": f"{fit['first_day']} → {fit['last_day']}",
        "fit_rounds": rounds,
    }
    return TrainingResult(
        model=Model(booster=booster, encoder=encoder, manifest=manifest),
        learning_curve={"valid": curve},
        best_iteration=rounds,
        params=logged,
        seconds=time.perf_counter() - started,
    )


def _validation_curve(
    rows: dd.DataFrame, booster: lgb.Booster, encoder: FeatureEncoder, spec: ModelSpec, classes: list[Any] | None
) -> dict[str, list[float]]:
    """The validation metrics LightGBM's early stopping watches, after every round, on every validation row:
    additive per-round sums from each partition (on the workers), combined here."""
    parts = [
        p
        for p in killed_workers_explained(
            per_partition, rows, _round_sums, booster, encoder, spec.target.name, classes, spec.task
        )
        if p
    ]
    if not parts:
        raise TrainingError(f"{spec.path or spec.name}: training.validation_days: no validation rows")
    total = {key: sum(p[key] for p in parts) for key in parts[0]}
    n = total["rows"]
    if spec.task == "binary":
        return {
            "binary_logloss": list(total["logloss"] / n),
            "auc": [_binned_auc(pos, neg) for pos, neg in zip(total["positive"], total["negative"], strict=True)],
        }
    if spec.task == "multiclass":
        return {"multi_logloss": list(total["logloss"] / n), "multi_error": list(total["errors"] / n)}
    return {"rmse": list(np.sqrt(total["squares"] / n)), "l1": list(total["absolute"] / n)}


def _round_sums(
    part: pd.DataFrame, booster: lgb.Booster, encoder: FeatureEncoder, target: str, classes: list[Any] | None, task: str
) -> dict[str, Any]:
    """Per-round sums of one partition's validation rows: the raw score grows by one round's trees at a time."""
    if not len(part):
        return {}
    y = codes(part[target], classes)
    if classes is not None:  # a label outside the classes is not trained on, nor validated on
        part, y = part[y != UNKNOWN], y[y != UNKNOWN]
        if not len(part):
            return {}
    matrix = encoder.transform(part)
    rounds = booster.current_iteration()
    raw: npt.NDArray[np.float64] = np.zeros(())  # broadcasts as 0.0 would: then one raw score (per class) per row
    out: dict[str, Any] = {
        "rows": len(part),
        "logloss": np.zeros(rounds),
        "errors": np.zeros(rounds),
        "squares": np.zeros(rounds),
        "absolute": np.zeros(rounds),
        "positive": np.zeros((rounds, BINS)),
        "negative": np.zeros((rounds, BINS)),
    }
    for i in range(rounds):
        # lightgbm's stubs allow the sparse and list answers of sparse input and pred_contrib too
        scores = cast(
            "npt.NDArray[np.float64]", booster.predict(matrix, raw_score=True, start_iteration=i, num_iteration=1)
        )
        raw = raw + scores
        if task == "binary":
            p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-15, 1 - 1e-15)
            out["logloss"][i] = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
            bins = np.minimum((p * BINS).astype(int), BINS - 1)
            out["positive"][i] = np.bincount(bins[y == 1], minlength=BINS)
            out["negative"][i] = np.bincount(bins[y == 0], minlength=BINS)
        elif task == "multiclass":
            shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
            p = shifted / shifted.sum(axis=1, keepdims=True)
            index = y.astype(int)
            out["logloss"][i] = -np.sum(np.log(np.clip(p[np.arange(len(y)), index], 1e-15, 1)))
            out["errors"][i] = np.sum(p.argmax(axis=1) != index)
        else:
            out["squares"][i] = np.sum((raw - y) ** 2)
            out["absolute"][i] = np.sum(np.abs(raw - y))
    return out


def _binned_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The ROC AUC from score histograms of the positives and negatives (ties within a bin count a half)."""
    pairs = positive.sum() * negative.sum()
    if not pairs:
        return float("nan")
    below = np.cumsum(negative) - negative
    return float((np.sum(positive * below) + 0.5 * np.sum(positive * negative)) / pairs)


def _metrics_of(rows: dd.DataFrame, model: Model, spec: ModelSpec) -> dict[str, float]:
    """A model's task metrics on rows scored on the workers (a prediction and a label per row come back)."""
    parts = per_partition(rows, _scored_labels, model, spec.target.name)
    scored = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    if scored is None:
        return {}
    scores = scored.drop(columns=LABEL).to_numpy()
    y = encoded_target(model, scored.rename(columns={LABEL: spec.target.name}))
    known = y != UNKNOWN if model.labels is not None else np.ones(len(y), dtype=bool)
    scores = scores[:, 0] if scores.shape[1] == 1 else scores
    return task_metrics(spec.task, y[known], scores[known], model.classes)


def _scored_labels(part: pd.DataFrame, model: Model, target: str) -> pd.DataFrame:
    if not len(part):
        return pd.DataFrame()
    scores = model.predict(part)
    frame = pd.DataFrame(scores.reshape(len(part), -1)).add_prefix("p")
    return frame.assign(**{LABEL: part[target].to_numpy()})


def _encoder_and_classes(
    frame: dd.DataFrame, spec: ModelSpec, splits: list[str]
) -> tuple[FeatureEncoder, list[Any] | None, dict[str, int]]:
    """The encoder with every categorical level of the rows the model is fitted on, the classes, and how many
    training and validation rows carry a label outside them (left out, as the local engine leaves them out),
    all collected on the workers (the local engine's `FeatureEncoder.fit` and `classes_of` on the same rows)."""
    features, target = spec.features, spec.target.name
    levels: dict[str, set[str]] = {name: set() for name in features.all_categorical}
    found: dict[str, Counter[Any]] = {"train": Counter(), "valid": Counter()}
    for part in per_partition(frame, _distinct, features.all_categorical, target, splits, spec.task):
        for name, values in part["levels"].items():
            levels[name] |= values
        for split, counts in part["classes"].items():
            found[split].update(counts)
    encoder = FeatureEncoder(
        features.all_numeric, features.all_categorical, {name: sorted(values) for name, values in levels.items()}
    )
    if spec.task == "regression":
        return encoder, None, {}
    classes = classes_of(spec, list(found["train"]), list(found["valid"]) if "valid" in splits else [])
    known = Labels("multiclass", tuple(classes))
    left_out = {
        split: sum(count for label, count in counts.items() if known.encode([label])[0] == UNKNOWN)
        for split, counts in found.items()
    }
    return encoder, classes, left_out


def _distinct(part: pd.DataFrame, categorical: list[str], target: str, splits: list[str], task: str) -> dict[str, Any]:
    """A partition's categorical levels (of the rows the model is fitted on) and its label counts per split."""
    rows = part[part[SPLIT].isin(splits)]
    return {
        "levels": {name: set(rows[name].dropna().astype(str).unique()) for name in categorical},
        "classes": {}
        if task == "regression"
        else {split: part.loc[part[SPLIT] == split, target].value_counts().to_dict() for split in ("train", "valid")},
    }


def _threads(client: Client) -> int:
    threads: list[int] = [info.get("nthreads", 1) for info in workers_of(client).values()]
    return max(1, min(threads or [1]))
