"""One retraining partition's ML work, without the orchestrator: assemble the window's training set, train
(after tuning, when the spec asks for it), and record the run in MLflow: parameters, learning curve,
validation metrics, data versions and the model files (native text + manifest, plus the pyfunc flavour).

The caller owns the MLflow run (it starts and ends it) and the registry; the functions here log into the
active run, so they are unit-tested against a real local MLflow store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from ml_platform.core.data_versions import versions_by_day, versions_by_partition, versions_digest
from ml_platform.core.evaluation import DEFAULT_METRIC, score
from ml_platform.core.mlflow_store import DATA_VERSIONS, MODEL_FILES, TUNING_TRIALS, log_batch, remember_model
from ml_platform.core.training import Split, TrainingError, TrainingResult, split_by_time, train, tune
from ml_platform.spec import ModelSpec

SPLIT = "__split__"  # the column of a stored training set that says which split a row belongs to
_PARTS = ("train", "valid", "test")


def metric_of(spec: ModelSpec) -> str:
    """The metric the gates judge (the spec's, else the task's default)."""
    return spec.gates.metric or DEFAULT_METRIC[spec.task]


@dataclass
class TrainingSet:
    """A window of feature rows split by time, with what a user checks first about it."""

    frame: pd.DataFrame            # every row, with its split in the SPLIT column
    summary: dict[str, dict]       # rows, first and last day (and target balance) per split
    versions: dict[str, str]       # content hash of each data partition of features in the window

    def metadata(self) -> dict:
        return {"rows": len(self.frame), **{f"rows_{k}": v["rows"] for k, v in self.summary.items()},
                "window": f"{min(self.versions)} → {max(self.versions)}" if self.versions else "empty",
                "splits": self.summary, "upstream_data_versions": self.versions,
                "upstream_partitions": len(self.versions)}


def build_training_set(features: pd.DataFrame, spec: ModelSpec,
                       partitions: Sequence[str] | Mapping[str, tuple[datetime, datetime]]) -> TrainingSet:
    """The window's rows split into train / validation / test; every data partition of the window must have rows.

    `partitions` are the window's data partitions: each key with its time window [start, end) in naive UTC
    (hourly, daily or weekly partitions alike), or ISO days for daily partitions. Coverage and data versions
    are per partition, by event time.
    """
    windows = _windows(partitions)
    keys = list(windows)
    versions = versions_by_partition(features, spec.timestamp, windows)
    missing = [key for key in keys if key not in versions]
    if missing:
        unit = _UNITS.get(max(end - start for start, end in windows.values()), "partitions")
        raise TrainingError(
            f"training.window_days: the {spec.training.window_days}-day window {keys[0]} → "
            f"{keys[-1]} has features for {len(keys) - len(missing)} of {len(keys)} {unit}; "
            f"missing: {', '.join(missing[:7])}{' …' if len(missing) > 7 else ''}. Materialize {spec.name}/features "
            f"for them (or shorten training.window_days in {spec.path}).")
    split = split_by_time(features, spec)
    frame = pd.concat([getattr(split, part).assign(**{SPLIT: part}) for part in _PARTS], ignore_index=True)
    return TrainingSet(frame, split.summary(spec.timestamp, spec.target.name, spec.task), versions)


_UNITS = {timedelta(hours=1): "hours", timedelta(days=1): "days", timedelta(days=7): "weeks"}


def _windows(partitions: Sequence[str] | Mapping[str, tuple[datetime, datetime]],
             ) -> dict[str, tuple[datetime, datetime]]:
    """Each partition key with its time window, oldest first; ISO days stand for daily partitions."""
    if isinstance(partitions, Mapping):
        return dict(sorted(partitions.items(), key=lambda item: item[1][0]))
    days = {day: datetime.fromisoformat(day) for day in partitions}
    return {day: (start, start + timedelta(days=1)) for day, start in sorted(days.items(), key=lambda i: i[1])}


def split_of(training_set: pd.DataFrame) -> Split:
    """The stored training set back into its three splits (without the SPLIT column)."""
    return Split(*(training_set[training_set[SPLIT] == part].drop(columns=SPLIT).reset_index(drop=True)
                   for part in _PARTS))


@dataclass
class TrainedModel:
    """A model trained and logged in the active MLflow run, ready to be registered."""

    result: TrainingResult
    model_uri: str                 # the pyfunc flavour's URI, what the registry registers
    model_sha256: str              # of the native model file: the same rows and spec give the same bytes
    valid: dict[str, float]        # validation metrics
    trials: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part (prepare, training, MLflow ...)


def train_and_log(spec: ModelSpec, training_set: pd.DataFrame, partition: str,
                  versions: dict[str, str] | None = None) -> TrainedModel:
    """Train on the training split (early stopping on validation) and log everything to the active run: the
    params, validation metrics, tags and learning curve in one `log_batch`, the data versions (and tuning
    trials) beside the model files in one artifact upload, then the pyfunc flavour. `versions` are the
    training set's per-day data versions when the caller has computed them already (`versions_by_day` of the
    training set without its SPLIT column); hashing every day again costs a tenth of a second per retrain."""
    import mlflow

    timings: dict[str, float] = {}
    started = time.perf_counter()
    split = split_of(training_set)
    metric = metric_of(spec)
    if versions is None:
        versions = versions_by_day(training_set.drop(columns=SPLIT), spec.timestamp)
    timings["prepare"] = time.perf_counter() - started
    override, trials = None, []
    if spec.training.tuning.trials:
        started = time.perf_counter()
        override, trials = tune(spec, split, lambda model, frame: score(model, frame, metric))
        timings["tuning"] = time.perf_counter() - started
    started = time.perf_counter()
    result = train(spec, split, override, extra_manifest={"partition": partition})
    timings["training"] = time.perf_counter() - started
    started = time.perf_counter()
    valid = {k.removeprefix("valid_"): v for k, v in result.model.manifest["metrics"].items()}
    result.model.manifest["data_versions"] = versions
    log_batch(mlflow.active_run().info.run_id,
              params={**{k: v for k, v in result.params.items() if k != "metric"},
                      "window_days": spec.training.window_days, "partition": partition,
                      "best_iteration": result.best_iteration},
              metrics={f"valid_{k}": v for k, v in valid.items()},
              tags={"data_versions_digest": versions_digest(versions),
                    "window": f"{split.train[spec.timestamp].min().date()} → "
                              f"{split.test[spec.timestamp].max().date()}"},
              steps=curve_metrics(result.learning_curve))
    timings["mlflow_params_metrics"] = time.perf_counter() - started
    extra = {DATA_VERSIONS: versions, **({TUNING_TRIALS: {"trials": trials}} if trials else {})}
    model_uri, sha256 = log_model_files(result.model, extra, timings)
    return TrainedModel(result, model_uri, sha256, valid, trials, timings)


def log_model_files(model, extra_json: dict[str, object] | None = None,
                    timings: dict[str, float] | None = None) -> tuple[str, str]:
    """The native model files (and `extra_json`: run path → JSON-able object, written beside them) in one
    artifact upload, then the pyfunc flavour (logged as code), in the active run: (model URI, sha256).
    `timings`, when given, receives the seconds of each of the two uploads."""
    import mlflow

    from ml_platform.core.pyfunc_model import ARTIFACT

    timings = {} if timings is None else timings
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        root = Path(scratch) / "run"
        folder = model.save(root / MODEL_FILES)
        for name, content in (extra_json or {}).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(json.dumps(content, indent=2, default=str), encoding="utf-8")
        mlflow.log_artifacts(str(root))
        sha256 = hashlib.sha256((folder / "model.txt").read_bytes()).hexdigest()
        timings["mlflow_artifacts"] = time.perf_counter() - started
        started = time.perf_counter()
        with _without_requirement_scan():
            logged = mlflow.pyfunc.log_model(name="model",
                                             python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                                             artifacts={ARTIFACT: str(folder)}, pip_requirements=[],
                                             input_example=None)
        timings["mlflow_pyfunc_model"] = time.perf_counter() - started
        # the evaluation reads this model back: from these very files, not through another download
        remember_model(mlflow.active_run().info.run_id, type(model).load(folder), mlflow.get_tracking_uri())
    return logged.model_uri, sha256


@contextlib.contextmanager
def _without_requirement_scan():
    """MLflow checks a logged model's pip requirements against the installed packages; the first check in a
    process scans every installed distribution (about 1 s, most of a launched retrain's first `log_model`).
    The flavour's only requirement is MLflow at the running version (`pip_requirements=[]`), which this
    environment satisfies by definition, so the check could only ever pass: it is skipped for this call.
    (MLflow's private hook; if it moves, nothing is skipped.)"""
    from mlflow.utils import environment

    original = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if original is None:
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = original


def curve_metrics(curve: dict[str, dict[str, list[float]]]) -> list:
    """Every round's train and validation metrics as MLflow metric steps (`curve_<split>_<metric>`), so the
    MLflow UI plots the learning curve."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(f"curve_{split}_{name}", float(value), now, step)
            for split, by_name in curve.items() for name, values in by_name.items()
            for step, value in enumerate(values)]


def log_learning_curve(curve: dict[str, dict[str, list[float]]]) -> None:
    """The learning curve alone into the active run (`train_and_log` sends it with the run's other scalars)."""
    import mlflow

    log_batch(mlflow.active_run().info.run_id, steps=curve_metrics(curve))


__all__ = ["SPLIT", "TrainedModel", "TrainingError", "TrainingSet", "build_training_set", "log_model_files",
           "metric_of", "split_of", "train_and_log"]
