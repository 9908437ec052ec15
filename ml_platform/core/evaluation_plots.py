"""The evaluation's pictures as base64 PNG text: attributions, binary curves, residuals, the confusion matrix.

Drawn on bare `Figure`s (no pyplot state, safe in threads and servers) with fixed margins instead of
`tight_layout`, curves thinned to `CURVE_POINTS` points and the residual scatter to `SCATTER_POINTS`: the same
pictures in a fraction of the time (a retrain renders them every time).
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn import metrics as skm

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_POINTS = 400  # ROC and precision-recall curves are drawn through at most this many of their points
SCATTER_POINTS = 5000  # the residual plot shows a fixed random sample of at most this many rows
CONFUSION_CLASSES = 20  # the confusion plot draws at most this many classes (the most frequent); tables keep all


def attributions_plot(importance: pd.Series) -> str:
    """The 15 features with the largest mean |SHAP contribution|, largest on top."""
    from matplotlib.figure import Figure

    top = importance.head(15)[::-1]
    width = max((len(str(name)) for name in top.index), default=10)
    figure = Figure(figsize=(6, 4), dpi=80)
    axis = figure.subplots()
    figure.subplots_adjust(left=min(0.1 + 0.012 * width, 0.45), right=0.97, top=0.92, bottom=0.1)
    axis.barh([str(name) for name in top.index], top.to_numpy(), color="#4f46e5")
    axis.set_title("Mean |SHAP contribution| on the holdout")
    return _png(figure)


def curves_plot(y_true: np.ndarray, predictions: np.ndarray) -> str:
    """A binary classifier's ROC, precision-recall and calibration curves side by side."""
    from matplotlib.figure import Figure

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
    return _png(figure)


def residuals_plot(y_true: np.ndarray, predictions: np.ndarray) -> str:
    """A regression's residuals against its predictions (a fixed sample of `SCATTER_POINTS` rows at most)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=80)
    axis = figure.subplots()
    figure.subplots_adjust(left=0.14, right=0.97, top=0.92, bottom=0.12)
    shown = np.random.default_rng(0).permutation(len(predictions))[:SCATTER_POINTS]
    axis.scatter(predictions[shown], (y_true - predictions)[shown], s=3, alpha=0.3)
    axis.axhline(0, color="grey")
    axis.set(
        title="Residuals" + (f" ({len(shown)} of {len(predictions)} rows)" if len(shown) < len(predictions) else ""),
        xlabel="predicted",
        ylabel="actual - predicted",
    )
    return _png(figure)


def confusion_plot(table: pd.DataFrame) -> str:
    """A confusion matrix (actual label by predicted label, `evaluation.confusion_matrix`) as an annotated
    heatmap. Cells show counts; colours show each count's share of its actual class, so that a rare class's
    errors stay visible beside a frequent one. Beyond `CONFUSION_CLASSES` classes only the most frequent are
    drawn (a picture of hundreds of cells reads as noise); the table in the card keeps them all."""
    from matplotlib.figure import Figure

    shown = _most_frequent(table, CONFUSION_CLASSES)
    counts = shown.to_numpy()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k, names = len(shown), [_short(name) for name in shown.index]
    side, label = min(3.0 + 0.4 * k, 10.0), 0.4 + 0.075 * max(len(n) for n in names)  # inches
    figure = Figure(figsize=(side + label + 1.4, side + label * (0.7 if k > 4 else 0.3) + 0.9), dpi=80)
    axis = figure.subplots()
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=(label + 0.2) / width, right=1 - 1.2 / width, top=1 - 0.4 / height, bottom=(height - side - 0.4) / height
    )
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the actual class")
    axis.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    axis.set_yticks(range(k), names)
    drawn = f" ({k} most frequent of {len(table)} classes)" if k < len(table) else ""
    axis.set(title=f"Confusion matrix on the holdout{drawn}", xlabel="predicted", ylabel="actual")
    size = 10 if k <= 8 else 8 if k <= 14 else 6
    for i in range(k):
        for j in range(k):
            axis.text(
                j,
                i,
                f"{counts[i, j]:,}",
                ha="center",
                va="center",
                fontsize=size,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    return _png(figure)


def _most_frequent(table: pd.DataFrame, most: int) -> pd.DataFrame:
    """The rows and columns of the `most` classes with the most actual rows, in the table's class order."""
    if len(table) <= most:
        return table
    chosen = set(table.sum(axis=1).sort_values(ascending=False, kind="stable").index[:most])
    order = [name for name in table.index if name in chosen]
    return table.loc[order, order]


def _short(name: str, most: int = 24) -> str:
    """A class name short enough for an axis label."""
    return name if len(name) <= most else name[: most - 1] + "…"


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most CURVE_POINTS points of a curve, evenly spaced along it, first and last kept."""
    if len(x) <= CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
    return x[keep], y[keep]


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, pil_kwargs={"compress_level": 1})
    return base64.b64encode(buffer.getvalue()).decode()
