"""Evaluating a model on its held-out slice: task metrics, a naive baseline, slices, fairness, attributions.

Everything here is plain pandas/scikit-learn/matplotlib, so the same numbers appear in MLflow, in the Dagster
UI and in the model card.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ml_platform.core.model import Model

#: Metrics where larger is better; the others (losses, errors) are better when smaller.
HIGHER_IS_BETTER = {"roc_auc", "pr_auc", "r2", "macro_f1", "accuracy"}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
MIN_SLICE_ROWS = 30


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` on `metric` (negative when worse), whichever way the metric points."""
    return new - old if metric in HIGHER_IS_BETTER else old - new


def meets(metric: str, value: float, bound: float) -> bool:
    """Whether `value` is on the good side of `bound`: at least it for roc_auc, at most it for rmse."""
    return value >= bound if metric in HIGHER_IS_BETTER else value <= bound


def task_metrics(task: str, y_true: np.ndarray, y_score: np.ndarray, classes: list | None = None) -> dict[str, float]:
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
    target = frame[model.manifest["target"]]
    if model.labels is not None:
        return model.labels.encode(target)
    return target.to_numpy(dtype=np.float64)


def score(model: Model, frame: pd.DataFrame, metric: str) -> float:
    """One metric of a model on a frame, oriented so that larger is better (for tuning)."""
    value = task_metrics(model.task, encoded_target(model, frame), model.predict(frame), model.classes)[metric]
    return improvement(metric, value, 0.0)


def baseline_metrics(task: str, y_train: np.ndarray, y_test: np.ndarray, n_classes: int = 0) -> dict[str, float]:
    """A naive model: the training prior (classification) or the training mean (regression)."""
    if task == "binary":
        return task_metrics(task, y_test, np.full(len(y_test), float(np.mean(y_train))))
    if task == "regression":
        return task_metrics(task, y_test, np.full(len(y_test), float(np.mean(y_train))))
    prior = np.bincount(y_train.astype(int), minlength=n_classes) / max(len(y_train), 1)
    return task_metrics(task, y_test, np.tile(prior, (len(y_test), 1)))


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

    @property
    def value(self) -> float:
        return self.metrics.get(self.metric, float("nan"))


def slice_metrics(model: Model, frame: pd.DataFrame, predictions: np.ndarray, columns: list[str],
                  metric: str) -> pd.DataFrame:
    """The metric per level of each named categorical column (levels with too few rows are skipped)."""
    y = encoded_target(model, frame)
    rows = []
    for column in columns:
        for level, index in frame.groupby(frame[column].astype(str), sort=True).indices.items():
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
    best, worst = part.loc[part[metric].idxmax()], part.loc[part[metric].idxmin()]
    return {"group": group, "metric": metric, "gap": float(best[metric] - worst[metric]),
            "best": str(best["level"]), "worst": str(worst["level"]), "levels": int(len(part))}


def sanity(task: str, predictions: np.ndarray) -> dict[str, Any]:
    """Predictions must be finite, in range and not constant."""
    finite = bool(np.isfinite(predictions).all())
    in_range = True
    if task in ("binary", "multiclass"):
        in_range = bool(((predictions >= 0) & (predictions <= 1)).all())
    spread = float(np.nanstd(predictions)) if finite else float("nan")
    return {"finite": finite, "in_range": in_range, "std": spread, "constant": not spread > 1e-9,
            "passed": finite and in_range and spread > 1e-9}


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
    importance.attrs = {"rows": len(rows), "of_rows": len(frame), "cap": sample,
                        "seconds": time.perf_counter() - started}
    return importance


def evaluate(model: Model, train: pd.DataFrame, test: pd.DataFrame, metric: str, slices: list[str],
             fairness_group: str | None, champion: Model | None = None, plots: bool = True,
             predictions: np.ndarray | None = None, champion_predictions: np.ndarray | None = None,
             explain: pd.DataFrame | None = None) -> Evaluation:
    """Everything the gates and the model card need, computed once on the held-out slice. Predictions scored
    elsewhere (on a cluster) may be given with `test` holding only the target and slice columns; `explain` is
    then the held-out rows, or a sample of them, with their features, for TreeSHAP."""
    predictions = model.predict(test) if predictions is None else predictions
    y_test = encoded_target(model, test)
    y_train = encoded_target(model, train)
    metrics = task_metrics(model.task, y_test, predictions, model.classes)
    columns = list(dict.fromkeys([*slices, *([fairness_group] if fairness_group else [])]))
    slice_table = slice_metrics(model, test, predictions, columns, metric)
    champion_metrics = None
    if champion is not None:
        if champion_predictions is None:
            champion_predictions = champion.predict(test)
        champion_metrics = task_metrics(champion.task, encoded_target(champion, test), champion_predictions,
                                        champion.classes)
    importance = attributions(model, test if explain is None else explain)
    importance.attrs["of_rows"] = len(test)
    evaluation = Evaluation(
        metric=metric, metrics=metrics,
        baseline=baseline_metrics(model.task, y_train, y_test, len(model.classes)),
        slices=slice_table,
        fairness=fairness_gap(slice_table, fairness_group, metric) if fairness_group else None,
        attributions=importance, sanity=sanity(model.task, predictions),
        predictions=predictions, champion=champion_metrics)
    if plots:
        evaluation.plots = make_plots(model, y_test, predictions, evaluation.attributions)
    return evaluation


CURVE_POINTS = 400  # ROC and precision-recall curves are drawn through at most this many of their points


def make_plots(model: Model, y_true: np.ndarray, predictions: np.ndarray, importance: pd.Series) -> dict[str, str]:
    """PNG plots as base64 strings: attributions, and ROC/PR/calibration or residuals. Rendered once, here: the
    model card, the Dagster metadata and the MLflow run all use these bytes.

    Drawn on bare `Figure`s (no pyplot state) with fixed margins instead of `tight_layout`, curves thinned to
    `CURVE_POINTS` points and the residual scatter to `SCATTER_POINTS`: the same pictures in a fraction of the
    time (a retrain renders them every time)."""
    from matplotlib.figure import Figure

    plots = {}
    top = importance.head(15)[::-1]
    width = max((len(str(name)) for name in top.index), default=10)
    figure = Figure(figsize=(6, 4), dpi=80)
    axis = figure.subplots()
    figure.subplots_adjust(left=min(0.1 + 0.012 * width, 0.45), right=0.97, top=0.92, bottom=0.1)
    axis.barh([str(name) for name in top.index], top.values, color="#4f46e5")
    axis.set_title("Mean |SHAP contribution| on the holdout")
    plots["feature_attributions"] = _png(figure)
    if model.task == "binary" and len(np.unique(y_true)) == 2:
        figure = Figure(figsize=(13, 4), dpi=80)
        axes = figure.subplots(1, 3)
        figure.subplots_adjust(left=0.05, right=0.98, top=0.92, bottom=0.13, wspace=0.25)
        fpr, tpr, _ = skm.roc_curve(y_true, predictions)
        axes[0].plot(*_thin(fpr, tpr))
        axes[0].plot([0, 1], [0, 1], "--", color="grey")
        axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
        precision, recall, _ = skm.precision_recall_curve(y_true, predictions)
        axes[1].plot(*_thin(recall, precision))
        axes[1].set(title="Precision-recall", xlabel="recall", ylabel="precision")
        bins = np.clip((predictions * 10).astype(int), 0, 9)
        frame = pd.DataFrame({"bin": bins, "p": predictions, "y": y_true}).groupby("bin").mean()
        axes[2].plot(frame["p"], frame["y"], "o-")
        axes[2].plot([0, 1], [0, 1], "--", color="grey")
        axes[2].set(title="Calibration", xlabel="mean predicted", ylabel="observed rate")
        plots["curves"] = _png(figure)
    elif model.task == "regression":
        figure = Figure(figsize=(6, 4), dpi=80)
        axis = figure.subplots()
        figure.subplots_adjust(left=0.14, right=0.97, top=0.92, bottom=0.12)
        shown = np.random.default_rng(0).permutation(len(predictions))[:SCATTER_POINTS]
        axis.scatter(predictions[shown], (y_true - predictions)[shown], s=3, alpha=0.3)
        axis.axhline(0, color="grey")
        axis.set(title="Residuals" + (f" ({len(shown)} of {len(predictions)} rows)" if len(shown) < len(predictions)
                                      else ""), xlabel="predicted", ylabel="actual - predicted")
        plots["residuals"] = _png(figure)
    return plots


SCATTER_POINTS = 5000  # the residual plot shows a fixed random sample of at most this many rows


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most CURVE_POINTS points of a curve, evenly spaced along it, first and last kept."""
    if len(x) <= CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
    return x[keep], y[keep]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, pil_kwargs={"compress_level": 1})
    return base64.b64encode(buffer.getvalue()).decode()
