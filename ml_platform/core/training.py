"""Training a LightGBM model from a spec on a time-ordered window of feature rows.

The window is split by time, never at random: the newest days are the held-out test slice, the days before
them drive early stopping, the rest train. With `training.refit` (the default) the final model is then
trained again on the training and validation days with the number of rounds early stopping chose.
Training is deterministic: the same rows and spec give a byte-identical model file (fixed seeds, fixed
thread count, LightGBM's deterministic mode).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from ml_platform.core import binning
from ml_platform.core.labels import UNKNOWN, LabelError, Labels, positives
from ml_platform.core.model import FeatureEncoder, Model
from ml_platform.spec import ModelSpec

# Parameters the platform owns: determinism and the objective follow from the spec, not from user params.
_FIXED = {"deterministic": True, "force_col_wise": True, "num_threads": 2, "verbosity": -1}
# The first metric is the objective's own loss: early stopping watches it alone (`first_metric_only`). A ranking
# metric such as the AUC flattens within a few rounds and then wanders by noise, so a rule that stops on whichever
# metric stalls first stopped on that noise: at 6 rounds on the bundled spec, with the log loss still falling for
# 50 more, and at a different round on every engine and run.
_OBJECTIVES = {
    "binary": ("binary", ["binary_logloss", "auc"]),
    "multiclass": ("multiclass", ["multi_logloss", "multi_error"]),
    "regression": ("regression", ["rmse", "l1"]),
}
# LightGBM's names for the number of rounds: in params they would override the refit's rounds.
_ROUNDS = {
    "num_iterations",
    "num_iteration",
    "n_iter",
    "num_tree",
    "num_trees",
    "num_round",
    "num_rounds",
    "nrounds",
    "num_boost_round",
    "n_estimators",
    "max_iter",
}


class TrainingError(ValueError):
    """Training cannot proceed; the message names the spec field to change."""


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def summary(self, timestamp: str, target: str, task: str, positive: Any = None) -> dict[str, dict[str, Any]]:
        """Rows and days per split, and the target: the positive rate (binary; the share of `positive` when
        the labels are text), the mean (regression) or the class counts (multiclass)."""
        out = {}
        for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            stamps = part[timestamp]
            info: dict[str, Any] = {
                "rows": len(part),
                "first_day": str(stamps.min().date()) if len(part) else None,
                "last_day": str(stamps.max().date()) if len(part) else None,
            }
            if task == "binary":
                rate = positives(part[target], positive).mean()
                info["positive_rate"] = round(float(rate), 4) if len(part) else None
            elif task == "regression":
                info["target_mean"] = round(float(part[target].mean()), 4) if len(part) else None
            else:
                info["classes"] = part[target].value_counts().to_dict()
            out[name] = info
        return out


def split_by_time(frame: pd.DataFrame, spec: ModelSpec) -> Split:
    """Train / validation / test by day: the newest `test_days` days are the held-out slice."""
    if frame.empty:
        raise TrainingError(
            f"{spec.path or spec.name}: training.window_days: the window of "
            f"{spec.training.window_days} days has no feature rows; materialize features for it"
        )
    valid_start, test_start = split_days(frame[spec.timestamp].dt.normalize().unique(), spec)
    order = frame.sort_values([spec.timestamp, *([spec.key] if spec.key else [])], kind="stable")
    stamp = order[spec.timestamp].dt.normalize()
    return Split(
        train=order[stamp < valid_start].reset_index(drop=True),
        valid=order[(stamp >= valid_start) & (stamp < test_start)].reset_index(drop=True),
        test=order[stamp >= test_start].reset_index(drop=True),
    )


def split_days(days: npt.ArrayLike, spec: ModelSpec) -> tuple[np.datetime64, np.datetime64]:
    """The first validation day and the first test day, from the distinct days (midnights) of a window."""
    training = spec.training
    unique = np.unique(np.asarray(days, dtype="datetime64[ns]"))
    needed = training.validation_days + training.test_days + 1
    if len(unique) < needed:
        raise TrainingError(
            f"{spec.path or spec.name}: training.window_days: the window holds {len(unique)} "
            f"day(s) of data, at least {needed} are needed (training.validation_days + "
            f"training.test_days + 1 for training)"
        )
    return unique[-(training.test_days + training.validation_days)], unique[-training.test_days]


@dataclass
class TrainingResult:
    model: Model
    learning_curve: dict[str, dict[str, list[float]]]
    best_iteration: int
    params: dict[str, Any]
    seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def _labels(spec: ModelSpec, split: Split, refit: bool) -> tuple[list[Any] | None, dict[str, np.ndarray]]:
    """The target of each split as LightGBM labels (codes; -1 for a label outside the classes), and the classes
    (of the rows the final model trains on: the training rows, plus the validation rows when it is refitted on
    them, in the order `target.classes` gives)."""
    target = spec.target.name
    if spec.task == "regression":
        return None, {k: getattr(split, k)[target].to_numpy(dtype=np.float64) for k in ("train", "valid", "test")}
    classes = classes_of(spec, split.train[target], split.valid[target] if refit else [])
    labels = Labels(spec.task, tuple(classes))
    return classes, {k: labels.encode(getattr(split, k)[target]) for k in ("train", "valid", "test")}


def classes_of(spec: ModelSpec, train: Iterable[Any], valid: Iterable[Any]) -> list[Any]:
    """A classifier's classes: those of the training rows (a classifier needs two), plus those of `valid`
    (the validation rows, when the final model is refitted on them), or `target.classes` as declared; binary
    allows two, `(negative, positive)`."""
    try:
        labels = Labels.fit(
            spec.task,
            train,
            valid,
            declared=spec.target.classes,
            positive=spec.target.positive,
            target=spec.target.name,
        )
    except LabelError as error:
        raise TrainingError(f"{spec.path or spec.name}: {error}") from None
    return list(labels.classes)


def _labelled(split: Split, labels: dict[str, np.ndarray]) -> tuple[Split, dict[str, np.ndarray], dict[str, int]]:
    """The training and validation rows whose label is one of the classes (a class first seen in the validation
    days of a model not refitted on them, or outside `target.classes`, cannot be trained on), and how many
    rows of each were left out. The test rows are kept: evaluation counts them."""
    kept, left_out = {"test": split.test}, {}
    for name in ("train", "valid"):
        mask = labels[name] != UNKNOWN
        left_out[name] = int((~mask).sum())
        kept[name] = getattr(split, name)[mask].reset_index(drop=True) if left_out[name] else getattr(split, name)
        labels = {**labels, name: labels[name][mask]}
    return Split(kept["train"], kept["valid"], kept["test"]), labels, left_out


def labels_left_out(counts: dict[str, int]) -> dict[str, Any]:
    """The manifest's record of rows left out of training for their label (only when there were any)."""
    return {"labels_unseen": counts} if any(counts.values()) else {}


def _fit_record(spec: ModelSpec, split: Split, fit_rows: pd.DataFrame, refit: bool, rounds: int) -> dict[str, Any]:
    """The manifest's `fit`: which rows the final model trained on, and where its number of rounds came from."""
    first_day, last_day = _days(fit_rows, spec.timestamp)
    return {
        "refit": refit,
        "splits": ["train", "valid"] if refit else ["train"],
        "rows": len(fit_rows),
        "first_day": first_day,
        "last_day": last_day,
        "rounds": rounds,
        "rounds_chosen_by": f"early stopping on the validation days ({len(split.valid)} rows)",
        "valid_metrics_from": (
            "the early-stopping model, trained on the training days only (the final model has seen the validation days)"
        )
        if refit
        else "the final model",
    }


def _refit(
    spec: ModelSpec,
    fit_rows: pd.DataFrame,
    labels: dict[str, np.ndarray],
    params: dict[str, Any],
    rounds: int,
    manifest: dict[str, Any],
) -> Model:
    """The final model on train + valid rows with the rounds early stopping chose. Categorical levels come from
    every row it sees, so a level new in the validation days is a level of the model rather than "missing"."""
    features = spec.features
    encoder = FeatureEncoder.fit(fit_rows, features.all_numeric, features.all_categorical)
    dataset = _fitted_dataset(encoder, fit_rows, np.concatenate([labels["train"], labels["valid"]]), params)
    booster = lgb.train(without_rounds(params), dataset, num_boost_round=rounds)
    return Model(booster=booster, encoder=encoder, manifest=manifest)


def _days(frame: pd.DataFrame, timestamp: str) -> tuple[str | None, str | None]:
    if frame.empty:
        return None, None
    return str(frame[timestamp].min().date()), str(frame[timestamp].max().date())


def _dataset(encoder: FeatureEncoder, frame: pd.DataFrame, labels: np.ndarray, **kwargs: Any) -> lgb.Dataset:
    return lgb.Dataset(
        encoder.transform(frame),
        labels,
        feature_name=encoder.names,
        categorical_feature=encoder.categorical_columns,
        free_raw_data=False,
        **kwargs,
    )


def _fitted_dataset(
    encoder: FeatureEncoder, frame: pd.DataFrame, labels: np.ndarray, params: dict[str, Any]
) -> lgb.Dataset:
    """The Dataset a model is fitted on, binned from `binning`'s sample of its rows, as the Dask engine bins it.
    While the rows fit in LightGBM's own sample it bins from every row in order anyway: no reference then, and
    the same bytes as ever."""
    step = binning.sample_step(len(frame), params)
    if step == 1:
        return _dataset(encoder, frame, labels)
    sample = encoder.transform(frame.iloc[::step])
    bins = binning.reference(sample, encoder.names, encoder.categorical_columns, without_rounds(params))
    return _dataset(encoder, frame, labels, reference=bins)


def train(
    spec: ModelSpec,
    split: Split,
    params_override: dict[str, Any] | None = None,
    extra_manifest: dict[str, Any] | None = None,
    refit: bool | None = None,
) -> TrainingResult:
    """Fit LightGBM on `split.train` with early stopping on `split.valid`; then, with refit (`training.refit`,
    unless `refit` says otherwise), fit the final model on train + valid with the rounds early stopping chose.

    The learning curve and the validation metrics are the early-stopping model's: the refitted model has seen
    the validation rows. The test rows are never trained on.
    Length: the two fits share their encoder, labels and parameters; split apart they would pass them around.
    """
    started = time.perf_counter()
    refit = spec.training.refit if refit is None else refit
    features = spec.features
    classes, labels = _labels(spec, split, refit)
    split, labels, left_out = _labelled(split, labels) if classes else (split, labels, {})
    encoder = FeatureEncoder.fit(split.train, features.all_numeric, features.all_categorical)
    params = lightgbm_params(spec, classes, params_override)
    train_set = _fitted_dataset(encoder, split.train, labels["train"], params)
    valid_set = _dataset(encoder, split.valid, labels["valid"], reference=train_set)
    curve: dict[str, dict[str, list[float]]] = {}
    try:
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=spec.training.num_boost_round,
            valid_sets=[train_set, valid_set],
            valid_names=["train", "valid"],
            callbacks=[
                lgb.early_stopping(spec.training.early_stopping_rounds, first_metric_only=True, verbose=False),
                lgb.record_evaluation(curve),
            ],
        )
    except lgb.basic.LightGBMError as error:
        raise TrainingError(
            f"{spec.path or spec.name}: training.params: LightGBM rejected the parameters: {error}"
        ) from None
    rounds = booster.best_iteration or booster.current_iteration()
    fit_rows = pd.concat([split.train, split.valid], ignore_index=True) if refit else split.train
    fit = _fit_record(spec, split, fit_rows, refit, rounds)
    manifest = manifest_of(
        spec,
        classes,
        params,
        {k: len(getattr(split, k)) for k in ("train", "valid", "test")},
        {
            "first_day": str(split.train[spec.timestamp].min().date()),
            "last_day": str(split.test[spec.timestamp].max().date()),
        },
        fit,
        encoder.names,
        booster.best_iteration,
        {**(extra_manifest or {}), **labels_left_out(left_out)},
    )
    from ml_platform.core.evaluation import encoded_target, task_metrics

    stopped = Model(booster=booster, encoder=encoder, manifest=manifest)
    valid = task_metrics(spec.task, encoded_target(stopped, split.valid), stopped.predict(split.valid), classes)
    model = _refit(spec, fit_rows, labels, params, rounds, manifest) if refit else stopped
    manifest["metrics"] = {f"valid_{k}": v for k, v in valid.items()}
    logged = {
        **params,
        "refit": refit,
        "fit_rows": len(fit_rows),
        "fit_window": f"{fit['first_day']} → {fit['last_day']}",
        "fit_rounds": rounds,
    }
    return TrainingResult(
        model=model,
        learning_curve=curve,
        best_iteration=booster.best_iteration,
        params=logged,
        seconds=time.perf_counter() - started,
    )


# LightGBM's validation metrics that improve upwards (the others improve downwards).
_HIGHER_IS_BETTER = {"auc", "average_precision", "ndcg", "map"}


def early_stopping_round(curve: dict[str, list[float]], patience: int) -> int:
    """LightGBM's early-stopping rule with `first_metric_only`, replayed on recorded validation metrics (name →
    value per round, in the order LightGBM evaluates them): training stops once the first metric (the objective's
    loss) has not improved for `patience` rounds, and the model keeps its best round.
    Returns the number of rounds (1-based), as `Booster.best_iteration`."""
    name = next(iter(curve))
    values = curve[name]
    best_value, best = values[0], 0
    for it, value in enumerate(values):
        if value > best_value if name in _HIGHER_IS_BETTER else value < best_value:
            best_value, best = value, it
        if it - best >= patience:
            break
    return best + 1


def lightgbm_params(
    spec: ModelSpec, classes: list[Any] | None, override: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The spec's LightGBM parameters with the objective, metrics and determinism the platform owns."""
    objective, metrics = _OBJECTIVES[spec.task]
    params = {
        "objective": objective,
        "metric": metrics,
        "seed": spec.training.seed,
        **spec.training.params,
        **(override or {}),
        **_FIXED,
    }
    if spec.task == "multiclass":
        params["num_class"] = len(classes or [])
    return params


def without_rounds(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters without LightGBM's names for the number of rounds (the caller sets the rounds)."""
    return {k: v for k, v in params.items() if k not in _ROUNDS}


def manifest_of(
    spec: ModelSpec,
    classes: list[Any] | None,
    params: dict[str, Any],
    rows: dict[str, int],
    window: dict[str, Any],
    fit: dict[str, Any],
    features: list[str],
    best_iteration: int,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The model's manifest: what it predicts, from which rows, with which parameters and packages."""
    return {
        "model": spec.name,
        "task": spec.task,
        "target": spec.target.name,
        "classes": classes,
        **({"positive": classes[1]} if spec.task == "binary" and classes else {}),
        "timestamp": spec.timestamp,
        "key": spec.key,
        "spec_digest": spec.digest,
        "best_iteration": best_iteration,
        "params": dict(params),
        "rows": rows,
        "window": window,
        "fit": fit,
        # The spec's data contract decides which features may be missing at scoring time.
        "nullable": {
            name: spec.expectations.columns[name].nullable if name in spec.expectations.columns else True
            for name in features
        },
        "package_versions": package_versions(),
        **(extra or {}),
    }


def tune(
    spec: ModelSpec, split: Split, score: Callable[[Model, pd.DataFrame], float]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Optuna search over a few LightGBM parameters on the validation slice; returns the best and the trials."""
    import optuna

    tuning = spec.training.tuning
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        override = {
            "num_leaves": trial.suggest_int("num_leaves", 15, 255, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }
        result = train(spec, split, override, refit=False)  # judged on rows it has not seen
        return score(result.model, split.valid)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=spec.training.seed))
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout.total_seconds())
    trials = sorted(
        ({"number": t.number, "value": t.value, **t.params} for t in study.trials if t.value is not None),
        key=lambda t: -t["value"],
    )
    return study.best_params, trials


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ml_platform", "lightgbm", "pandas", "numpy", "dagster", "mlflow"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out
