"""The model card: one Markdown page a reviewer can read without opening any tool."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # annotations only: the data steps' previews use markdown_table without scikit-learn
    from ml_platform.core.evaluation import Evaluation
    from ml_platform.core.gates import GateResult
    from ml_platform.core.trace import VersionLinks
    from ml_platform.spec import ModelSpec


def _cell(value: object) -> object:
    """A header or cell that cannot break its Markdown table: backslashes and pipes escaped (GFM renders
    `\\|` as `|` inside a cell), line breaks folded into spaces; numbers left for `floatfmt`."""
    if not isinstance(value, str):
        return value
    return " ".join(value.replace("\\", "\\\\").replace("|", "\\|").splitlines())


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GFM pipe table (`_none_` when empty); whatever the feature names, slice levels or gate details hold,
    it stays a table. Every Markdown table the platform writes into metadata can use it."""
    if not len(frame):
        return "_none_"
    safe = pd.DataFrame(
        {
            _cell(str(column)): values if pd.api.types.is_numeric_dtype(values) else values.astype(object).map(_cell)
            for column, values in frame.items()
        }
    )
    return safe.to_markdown(index=False, floatfmt=floatfmt)


def _final_fit(fit: dict[str, Any] | None) -> list[str]:
    """Which rows the final model saw: with refit, training and validation days (the test days never)."""
    if not fit:
        return []
    if fit.get("refit"):
        return [
            f"Final model: refit on train + validation, {fit.get('rows')} rows ({fit.get('first_day')} → "
            f"{fit.get('last_day')}), {fit.get('rounds')} rounds chosen by early stopping on the validation "
            "days; the validation metrics are the early-stopping model's.",
            "",
        ]
    return [f"Final model: the early-stopping model, trained on the training days ({fit.get('rows')} rows).", ""]


def _shap_sample(attrs: Mapping[Hashable | None, Any]) -> list[str]:
    """On how many rows the attributions were computed: TreeSHAP costs grow with rows, so they are capped."""
    if "rows" not in attrs:
        return []
    return [
        f"Mean absolute TreeSHAP contribution on {attrs['rows']} of {attrs['of_rows']} holdout rows "
        f"(sample cap {attrs['cap']}).",
        "",
    ]


def _classes(task: str, confusion: pd.DataFrame | None, most: int = 20) -> str:
    """The Task line's classes, in the model's code order; binary says which one the probability is for."""
    if confusion is None:
        return ""
    names = [str(name) for name in confusion.columns]
    if task == "binary":
        return f" · **Classes.** {names[0]} / {names[1]} (positive)"
    more = f", … ({len(names)} in all)" if len(names) > most else ""
    return f" · **Classes.** {', '.join(names[:most])}{more}"


def _unseen(unseen: dict[str, int], most: int = 10) -> list[str]:
    """Held-out rows the metrics leave out: their label was never seen in training, so no prediction can
    match it; the reader learns how many, and which labels, instead of a silently smaller test set."""
    if not unseen:
        return []
    shown = ", ".join(f"{label}: {count}" for label, count in list(unseen.items())[:most])
    more = f", … ({len(unseen)} labels)" if len(unseen) > most else ""
    return [
        f"{sum(unseen.values())} held-out rows carry a label never seen in training ({shown}{more}): left "
        "out of the metrics.",
        "",
    ]


def _confusion(confusion: pd.DataFrame | None) -> list[str]:
    """A classifier's confusion matrix: every class, counts of actual (rows) by predicted (columns) label."""
    if confusion is None:
        return []
    return [
        "## Confusion matrix (held-out slice)",
        markdown_table(confusion.reset_index()),
        "",
        "Rows: the actual label; columns: the predicted one (binary: probability at least 0.5; multiclass: "
        "the most probable class).",
        "",
    ]


def _trace(links: VersionLinks | None) -> list[str]:
    """The version's chain (its MLflow and Dagster runs, window, data, code) and how to trace a prediction."""
    chain = []
    if links is not None and links.run_id:
        source = (
            f"commit `{links.commit}`" + (" (uncommitted changes)" if links.dirty else "")
            if links.commit
            else (links.source_note or "commit not recorded")
        )
        chain = [
            f"MLflow run `{links.run_id}` (experiment `{links.experiment or links.experiment_id}`) · Dagster run "
            f"`{links.dagster_run_id or '-'}` · window {links.window or '-'} · data versions digest "
            f"`{links.data_versions_digest or '-'}` · {source}",
            "",
        ]
    return [
        "## Trace",
        *chain,
        "A prediction of this version: `ml-platform trace <request_id>` (every answer carries its request id) "
        "prints this chain, with the aliases the version held at that moment and each day's data version.",
        "",
    ]


def model_card(
    spec: ModelSpec,
    version: str | None,
    evaluation: Evaluation,
    gates: list[GateResult],
    data: dict[str, Any],
    plots: bool = True,
    links: VersionLinks | None = None,
) -> str:
    """Purpose, owner, data window and versions, metrics against baseline and champion, a classifier's
    confusion matrix, slices, fairness, attributions, gates, known limits and the version's trace (`links`).
    Length: the card's sections in reading order, one block each."""
    metrics = pd.DataFrame(
        [
            {
                "metric": k,
                "model": v,
                "baseline": evaluation.baseline.get(k),
                "champion": (evaluation.champion or {}).get(k),
            }
            for k, v in evaluation.metrics.items()
        ]
    )
    top = evaluation.attributions.head(10).rename("mean abs SHAP").reset_index().rename(columns={"index": "feature"})
    gate_rows = pd.DataFrame(
        [{"gate": g.name, "passed": "yes" if g.passed else "NO", "detail": g.detail} for g in gates]
    )
    fairness = evaluation.fairness
    lines = [
        f"# Model card: {spec.name}" + (f" v{version}" if version else ""),
        "",
        f"**Purpose.** {spec.description}",
        "",
        f"**Owner.** {spec.owner} · **Task.** {spec.task} · **Target.** `{spec.target.name}` = "
        f"`{spec.target.expression or spec.target.column}`{_classes(spec.task, evaluation.confusion)} · "
        f"**Spec digest.** `{spec.digest}`",
        "",
        "## Data",
        f"Training window {data.get('window', '?')}; split by time: "
        + ", ".join(
            f"{k} {v.get('rows')} rows ({v.get('first_day')} → {v.get('last_day')})"
            for k, v in data.get("splits", {}).items()
        )
        + ".",
        "",
        *_final_fit(data.get("fit")),
        f"Upstream data versions: {len(data.get('data_versions', {}))} partitions of `{spec.name}/features` "
        f"(listed in the run's metadata and MLflow tags).",
        "",
        "## Metrics on the held-out slice",
        markdown_table(metrics),
        "",
        *_unseen(evaluation.unseen_labels),
        *_confusion(evaluation.confusion),
        f"## Slices ({evaluation.metric})",
        markdown_table(evaluation.slices),
        "",
        "## Fairness",
        (
            f"Largest {fairness['metric']} gap across `{fairness['group']}`: **{fairness['gap']:.4f}** "
            f"(best {fairness['best']}, worst {fairness['worst']})."
            if fairness
            else "No sensitive group assessed."
        ),
        "",
        "## What drives predictions (TreeSHAP)",
        markdown_table(top),
        "",
        *_shap_sample(evaluation.attributions.attrs),
        "## Gates",
        markdown_table(gate_rows),
        "",
        *_trace(links),
        "## Limits",
        "- Trained on a rolling window of recent days; behaviour outside the range seen in training is "
        "extrapolation. Category levels never seen in training are scored as missing.",
        "- Metrics come from the newest days of the window only; slices with fewer than 30 rows are not shown.",
        "- Correlation, not causation: attributions explain the model, not the world.",
    ]
    if plots:
        lines += [
            "",
            "## Plots",
            *[f"![{name}](data:image/png;base64,{png})" for name, png in evaluation.plots.items()],
        ]
    return "\n".join(lines)
