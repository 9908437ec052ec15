"""Evaluating a model on its held-out slice: task metrics, a naive baseline, slices, fairness, attributions and
a classifier's confusion matrix.

Everything here is plain pandas/scikit-learn/matplotlib, so the same numbers appear in MLflow, in the Dagster
UI and in the model card. A classifier is judged only on held-out rows whose label it was trained on: a label
it never saw (or a missing one) cannot be predicted, so those rows are counted (`Evaluation.unseen_labels`)
instead of scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ml_platform.core import evaluation_plots
from ml_platform.core.labels import UNKNOWN, Labels
from ml_platform.core.metric_rules import HIGHER_IS_BETTER as HIGHER_IS_BETTER
from ml_platform.core.metric_rules import improvement
from ml_platform.core.metric_rules import meets as meets
from ml_platform.core.model import Model

# HIGHER_IS_BETTER and meets live in metric_rules; they stay importable from here too (a task's default metric
# is the spec's: ModelSpec.gate_metric).

MIN_SLICE_ROWS = 30


def task_metrics(
    task: str, y_true: np.ndarray, y_score: np.ndarray, classes: list[Any] | None = None
) -> dict[str, float]:
    """The standard metrics of a task; a metric that is undefined on this data (one class) is left out."""
    out: dict[str, float] = {}
    if task == "binary":
        y_score = np.clip(y_score, 1e-12, 1 - 1e-12)
        if len(np.unique(y_true)) == 2:
            out["roc_auc"] = skm.roc_auc_score(y_true, y_score)
            out["pr_auc"] = skm.average_precision_score(y_true, y_score)
            out["log_loss"] = skm.log_loss(y_true, y_score, labels=[0, 1])
        out["brier"] = skm.brier_score_loss(y_true, y_score)
        out["accuracy"] = skm.accuracy_score(y_true, y_score >= 0.5)
    elif task == "regression":
        out["rmse"] = float(np.sqrt(skm.mean_squared_error(y_true, y_score)))
        out["mae"] = skm.mean_absolute_error(y_true, y_score)
        if len(y_true) > 1:
            out["r2"] = skm.r2_score(y_true, y_score)
    else:
        labels = list(range(y_score.shape[1]))
        out["macro_f1"] = skm.f1_score(y_true, y_score.argmax(axis=1), average="macro", labels=labels)
        out["log_loss"] = skm.log_loss(y_true, np.clip(y_score, 1e-12, 1), labels=labels)
        out["accuracy"] = skm.accuracy_score(y_true, y_score.argmax(axis=1))
    return {k: float(v) for k, v in out.items()}


def encoded_target(model: Model, frame: pd.DataFrame) -> np.ndarray:
    """The target as the model's codes (classifiers: -1 for a missing label or one never seen in training)."""
    target: pd.Series = frame[model.manifest["target"]]
    if model.labels is not None:
        return model.labels.encode(target)
    return target.to_numpy(dtype=np.float64)


def known(model: Model, y: np.ndarray) -> np.ndarray:
    """The rows a model can be judged on: for a classifier, those whose label it was trained on (code -1, a
    label never seen in training or a missing one, matches no prediction and would crash the baseline and the
    log loss); every row for regression, where -1 is a value like any other."""
    if model.labels is None:
        return np.ones(len(y), dtype=bool)
    rows: np.ndarray = y != UNKNOWN
    return rows


def held_out(model: Model, frame: pd.DataFrame, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The encoded target and the predictions of the rows of `frame` the model can be judged on (`known`)."""
    y = encoded_target(model, frame)
    keep = known(model, y)
    return (y, predictions) if keep.all() else (y[keep], predictions[keep])


def score(model: Model, frame: pd.DataFrame, metric: str) -> float:
    """One metric of a model on a frame, oriented so that larger is better (for tuning)."""
    y, predictions = held_out(model, frame, model.predict(frame))
    value = task_metrics(model.task, y, predictions, model.classes)[metric]
    return improvement(metric, value, 0.0)


def baseline_metrics(task: str, y_train: np.ndarray, y_test: np.ndarray, n_classes: int = 0) -> dict[str, float]:
    """A naive model: the training prior (classification) or the training mean (regression). A classifier's
    rows with an unknown label (code -1) are left out of both sides."""
    if task == "regression":
        return task_metrics(task, y_test, np.full(len(y_test), float(np.mean(y_train))))
    y_train, y_test = y_train[y_train != UNKNOWN], y_test[y_test != UNKNOWN]
    if task == "binary":
        return task_metrics(task, y_test, np.full(len(y_test), float(np.mean(y_train))))
    prior = np.bincount(y_train.astype(int), minlength=n_classes) / max(len(y_train), 1)
    return task_metrics(task, y_test, np.tile(prior, (len(y_test), 1)))


def confusion_matrix(labels: Labels, y_true: np.ndarray, predictions: np.ndarray) -> pd.DataFrame:
    """Counts of actual label (rows) by predicted label (columns), class names on both axes, every class shown
    even when no row holds it. The predicted label is the one `accuracy` counts: binary at probability 0.5,
    multiclass the most probable class. `y_true` holds known codes only (see `held_out`)."""
    k = len(labels.classes)
    actual = np.asarray(y_true, dtype=np.int64)
    cells = np.bincount(actual * k + labels.predicted_codes(predictions), minlength=k * k).reshape(k, k)
    names = [str(c) for c in labels.classes]
    return pd.DataFrame(cells, index=pd.Index(names, name="actual"), columns=pd.Index(names, name="predicted"))


def unseen_labels(model: Model, frame: pd.DataFrame) -> dict[str, int]:
    """The held-out rows left out because their label is unknown to the model, per label (`(missing)` for rows
    without one); empty for regression."""
    if model.labels is None:
        return {}
    target = frame[model.manifest["target"]]
    missing = int(target.isna().sum())
    return {**model.labels.unseen(target), **({"(missing)": missing} if missing else {})}


@dataclass
class Evaluation:
    metric: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    slices: pd.DataFrame
    fairness: dict[str, Any] | None
    attributions: pd.Series
    sanity: dict[str, Any]
    predictions: np.ndarray
    champion: dict[str, float] | None = None
    plots: dict[str, str] = field(default_factory=dict)
    confusion: pd.DataFrame | None = None  # classifiers: actual (rows) by predicted (columns) label
    unseen_labels: dict[str, int] = field(default_factory=dict)  # held-out rows left out, per unknown label

    @property
    def value(self) -> float:
        return self.metrics.get(self.metric, float("nan"))


def slice_metrics(
    model: Model, frame: pd.DataFrame, predictions: np.ndarray, columns: list[str], metric: str
) -> pd.DataFrame:
    """The metric per level of each named categorical column (levels with too few rows are skipped), on the
    rows the model can be judged on (`known`)."""
    y = encoded_target(model, frame)
    keep = known(model, y)
    everything = bool(keep.all())
    y, predictions = (y, predictions) if everything else (y[keep], predictions[keep])
    rows = []
    for column in columns:
        levels = frame[column].astype(str)
        levels = levels if everything else levels[keep]
        for level, index in levels.groupby(levels, sort=True).indices.items():
            if len(index) < MIN_SLICE_ROWS:
                continue
            values = task_metrics(model.task, y[index], predictions[index], model.classes)
            if metric in values:
                rows.append({"column": column, "level": level, "rows": len(index), metric: values[metric]})
    return pd.DataFrame(rows, columns=["column", "level", "rows", metric])


def fairness_gap(slices: pd.DataFrame, group: str, metric: str) -> dict[str, Any] | None:
    """The largest difference of the metric between levels of the sensitive group."""
    part = slices[slices["column"] == group]
    if len(part) < 2:
        return None
    values = part[metric]
    best, worst = part.iloc[values.argmax()], part.iloc[values.argmin()]
    return {
        "group": group,
        "metric": metric,
        "gap": float(best[metric] - worst[metric]),
        "best": str(best["level"]),
        "worst": str(worst["level"]),
        "levels": len(part),
    }


def sanity(task: str, predictions: np.ndarray) -> dict[str, Any]:
    """Predictions must be finite, in range and not constant."""
    finite = bool(np.isfinite(predictions).all())
    in_range = True
    if task in ("binary", "multiclass"):
        in_range = bool(((predictions >= 0) & (predictions <= 1)).all())
    spread = float(np.nanstd(predictions)) if finite else float("nan")
    return {
        "finite": finite,
        "in_range": in_range,
        "std": spread,
        "constant": not spread > 1e-9,
        "passed": finite and in_range and spread > 1e-9,
    }


SHAP_SAMPLE_ROWS = 2000  # TreeSHAP explains at most this many holdout rows (a fixed random sample)


def attributions(model: Model, frame: pd.DataFrame, sample: int = SHAP_SAMPLE_ROWS, seed: int = 0) -> pd.Series:
    """Global importance: mean |TreeSHAP contribution| per feature on the holdout, or on a fixed random sample
    of `sample` rows of it when it is larger (the mean of a 2,000-row sample ranks features as the full holdout
    does, at a fraction of the cost). `.attrs` says how many rows were explained, of how many, and how long
    it took (`rows`, `of_rows`, `cap`, `seconds`), for the model card and the run's metadata."""
    import time

    started = time.perf_counter()
    rows = frame.sample(min(sample, len(frame)), random_state=seed) if len(frame) > sample else frame
    contributions = model.contributions(rows).drop(columns="(bias)")
    importance = contributions.abs().mean().sort_values(ascending=False)
    importance.attrs = {
        "rows": len(rows),
        "of_rows": len(frame),
        "cap": sample,
        "seconds": time.perf_counter() - started,
    }
    return importance


def evaluate(
    model: Model,
    train: pd.DataFrame,
    test: pd.DataFrame,
    metric: str,
    slices: list[str],
    fairness_group: str | None,
    champion: Model | None = None,
    plots: bool = True,
    predictions: np.ndarray | None = None,
    champion_predictions: np.ndarray | None = None,
    explain: pd.DataFrame | None = None,
) -> Evaluation:
    """Everything the gates and the model card need, computed once on the held-out slice. Predictions scored
    elsewhere (on a cluster) may be given with `test` holding only the target and slice columns; `explain` is
    then the held-out rows, or a sample of them, with their features, for TreeSHAP. Metrics, slices, the
    baseline, the champion and the plots use the rows with a known label; sanity checks every prediction."""
    predictions = model.predict(test) if predictions is None else predictions
    y_test, scored = held_out(model, test, predictions)
    columns = list(dict.fromkeys([*slices, *([fairness_group] if fairness_group else [])]))
    slice_table = slice_metrics(model, test, predictions, columns, metric)
    importance = attributions(model, test if explain is None else explain)
    importance.attrs["of_rows"] = len(test)
    evaluation = Evaluation(
        metric=metric,
        metrics=task_metrics(model.task, y_test, scored, model.classes),
        baseline=baseline_metrics(model.task, encoded_target(model, train), y_test, len(model.classes)),
        slices=slice_table,
        fairness=fairness_gap(slice_table, fairness_group, metric) if fairness_group else None,
        attributions=importance,
        sanity=sanity(model.task, predictions),
        predictions=predictions,
        champion=_champion_metrics(model, champion, test, champion_predictions),
        confusion=confusion_matrix(model.labels, y_test, scored) if model.labels else None,
        unseen_labels=unseen_labels(model, test) if len(y_test) < len(test) else {},
    )
    if plots:
        evaluation.plots = make_plots(model, y_test, scored, evaluation.attributions)
    return evaluation


def _champion_metrics(
    model: Model, champion: Model | None, test: pd.DataFrame, predictions: np.ndarray | None
) -> dict[str, float] | None:
    """The champion on the candidate's rows: those whose label both models know, so that the gate compares
    the two on the same rows."""
    if champion is None:
        return None
    predictions = champion.predict(test) if predictions is None else predictions
    y = encoded_target(champion, test)
    keep = known(champion, y) & known(model, encoded_target(model, test))
    return task_metrics(champion.task, y[keep], predictions[keep], champion.classes)


def make_plots(model: Model, y_true: np.ndarray, predictions: np.ndarray, importance: pd.Series) -> dict[str, str]:
    """PNG plots as base64 strings: attributions; ROC/PR/calibration (binary) or residuals (regression); and a
    classifier's confusion matrix. `y_true` and `predictions` are the rows with a known label (`held_out`).
    Rendered once, here: the model card, the Dagster metadata and the MLflow run all use these bytes."""
    plots = {"feature_attributions": evaluation_plots.attributions_plot(importance)}
    if model.task == "binary" and len(np.unique(y_true)) == 2:
        plots["curves"] = evaluation_plots.curves_plot(y_true, predictions)
    elif model.task == "regression":
        plots["residuals"] = evaluation_plots.residuals_plot(y_true, predictions)
    if model.labels is not None:
        plots["confusion_matrix"] = evaluation_plots.confusion_plot(confusion_matrix(model.labels, y_true, predictions))
    return plots
