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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_platform.core.data_versions import versions_digest
from ml_platform.core.engine import LOCAL, Engine
from ml_platform.core.evaluation import score
from ml_platform.core.mlflow_store import (
    DATA_VERSIONS,
    MODEL_FILES,
    TUNING_TRIALS,
    active_run_id,
    log_batch,
    remember_model,
)
from ml_platform.core.recipe import RESOLVED_SPEC, derived_tags, resolved_spec_yaml, source_state
from ml_platform.core.training import TrainingError, TrainingResult
from ml_platform.core.training_set import SPLIT, TrainingSet, build_training_set, split_of
from ml_platform.spec import ModelSpec

# Where the platform's own code is: its git state is recorded for a spec that was not loaded from a file.
PACKAGE_DIR = Path(__file__).resolve().parents[1]

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Metric

    from ml_platform.core.dask_frames import StoredPartitions
    from ml_platform.core.model import Model


@dataclass
class TrainedModel:
    """A model trained and logged in the active MLflow run, ready to be registered."""

    result: TrainingResult
    model_uri: str  # the pyfunc flavour's URI, what the registry registers
    model_sha256: str  # of the native model file: the same rows and spec give the same bytes
    valid: dict[str, float]  # validation metrics
    trials: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part (prepare, training, MLflow ...)


def train_and_log(
    spec: ModelSpec,
    training_set: pd.DataFrame | StoredPartitions,
    partition: str,
    versions: dict[str, str] | None = None,
    engine: Engine = LOCAL,
) -> TrainedModel:
    """Train on the training split (early stopping on validation) and log everything to the active run: the
    params, validation metrics, tags and learning curve in one `log_batch`, the data versions (and tuning
    trials) beside the model files in one artifact upload, then the pyfunc flavour. `versions` are the
    training set's per-day data versions when the caller has computed them already (`versions_by_day` of the
    training set without its SPLIT column); hashing every day again costs a tenth of a second per retrain.
    `training_set` is the frame of `engine`, which trains it (the local engine: in this process)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if versions is None:
        versions = engine.versions(training_set, spec.timestamp)
    timings["prepare"] = time.perf_counter() - started
    override: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = []
    if spec.training.tuning.trials:
        started = time.perf_counter()
        metric = spec.gate_metric
        override, trials = engine.tune(spec, training_set, lambda model, frame: score(model, frame, metric))
        timings["tuning"] = time.perf_counter() - started
    started = time.perf_counter()
    result = engine.train(spec, training_set, override, extra_manifest={"partition": partition})
    timings["training"] = time.perf_counter() - started
    started = time.perf_counter()
    valid = {k.removeprefix("valid_"): v for k, v in result.model.manifest["metrics"].items()}
    result.model.manifest["data_versions"] = versions
    window = result.model.manifest["window"]
    log_batch(
        active_run_id(),
        params={
            **{k: v for k, v in result.params.items() if k != "metric"},
            "window_days": spec.training.window_days,
            "partition": partition,
            "best_iteration": result.best_iteration,
        },
        metrics={f"valid_{k}": v for k, v in valid.items()},
        tags={
            "data_versions_digest": versions_digest(versions),
            "window": f"{window['first_day']} → {window['last_day']}",
            **source_state(spec.path.parent if spec.path else PACKAGE_DIR).tags(),
            **derived_tags(spec),
        },
        steps=curve_metrics(result.learning_curve),
    )
    timings["mlflow_params_metrics"] = time.perf_counter() - started
    extra: dict[str, object] = {
        DATA_VERSIONS: versions,
        RESOLVED_SPEC: resolved_spec_yaml(spec),
        **({TUNING_TRIALS: {"trials": trials}} if trials else {}),
    }
    model_uri, sha256 = log_model_files(result.model, extra, timings, rows=engine.example_rows(training_set))
    return TrainedModel(result, model_uri, sha256, valid, trials, timings)


def log_model_files(
    model: Model,
    extra_json: dict[str, object] | None = None,
    timings: dict[str, float] | None = None,
    rows: pd.DataFrame | None = None,
) -> tuple[str, str]:
    """The native model files (and `extra_json`: run path → JSON-able object or text, written beside them) in one
    artifact upload, then the portable pyfunc flavour (logged as code, with its code, pinned requirements,
    signature and input example: see pyfunc_flavour), in the active run: (model URI, sha256). `rows`: training
    rows, for the input example and the numeric types of the signature. `timings`, when given, receives the
    seconds of each of the two uploads."""
    import mlflow

    from ml_platform.core.pyfunc_flavour import log_arguments, log_model

    timings = {} if timings is None else timings
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        root = Path(scratch) / "run"
        folder = model.save(root / MODEL_FILES)
        for name, content in (extra_json or {}).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            text = content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
            (root / name).write_text(text, encoding="utf-8")
        mlflow.log_artifacts(str(root))
        sha256 = hashlib.sha256((folder / "model.txt").read_bytes()).hexdigest()
        timings["mlflow_artifacts"] = time.perf_counter() - started
        started = time.perf_counter()
        saved = type(model).load(folder)  # the evaluation reads this model back: these very files
        with _without_requirement_scan(), log_arguments(folder, saved, rows) as arguments:
            logged = log_model(**arguments)
        timings["mlflow_pyfunc_model"] = time.perf_counter() - started
        remember_model(active_run_id(), saved, mlflow.get_tracking_uri())
    return logged.model_uri, sha256


@contextlib.contextmanager
def _without_requirement_scan() -> Iterator[None]:
    """MLflow checks a logged model's pip requirements against the installed packages; the first check in a
    process scans every installed distribution (about 1 s, most of a launched retrain's first `log_model`).
    The flavour's requirements are pinned to the versions installed in this very environment
    (`pyfunc_flavour.requirements`), so the check could only ever pass: it is skipped for this call.
    (MLflow's private hook; if it moves, nothing is skipped.)"""
    from mlflow.utils import environment

    original = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if original is None:
        yield
        return
    environment.warn_dependency_requirement_mismatches = _no_requirement_check
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = original


def _no_requirement_check(model_requirements: list[str]) -> None:
    """Stands in for MLflow's requirement check while `_without_requirement_scan` is active."""


def curve_metrics(curve: dict[str, dict[str, list[float]]]) -> list[Metric]:
    """Every round's train and validation metrics as MLflow metric steps (`curve_<split>_<metric>`), so the
    MLflow UI plots the learning curve."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(f"curve_{split}_{name}", float(value), now, step)
        for split, by_name in curve.items()
        for name, values in by_name.items()
        for step, value in enumerate(values)
    ]


def log_learning_curve(curve: dict[str, dict[str, list[float]]]) -> None:
    """The learning curve alone into the active run (`train_and_log` sends it with the run's other scalars)."""
    log_batch(active_run_id(), steps=curve_metrics(curve))


__all__ = [
    "SPLIT",
    "TrainedModel",
    "TrainingError",
    "TrainingSet",
    "build_training_set",
    "log_model_files",
    "split_of",
    "train_and_log",
]
