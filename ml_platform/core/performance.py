"""Live performance: served predictions joined with outcomes that arrive later (delayed labels), and the
champion compared with another version (a challenger, or the previous champion) on the same outcomes.

A missing day of traffic, a log without keys, or labels that have not arrived yet are statuses, not errors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ml_platform.core.evaluation import task_metrics
from ml_platform.core.labels import UNKNOWN, Labels, probability_vectors
from ml_platform.core.metric_rules import improvement

LabelsOf = Callable[[str], "Labels | None"]  # a version's labels (None: regression, or a model without them)
Scored = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]


@dataclass(frozen=True, slots=True)
class LivePerformance:
    """A day's live performance: how many served rows found their outcome, the metrics of the answers, and a
    row per answering (and shadowing) version in `table` (`role`, `version`, `rows`, the metric).

    `status` says how far the day got: "no traffic", "no key: ..." (requests carry no key to join outcomes on),
    "labels not arrived", "partial labels" or "complete". `metrics["answer"]` holds the task metrics of the
    answers; `unseen_labels` counts outcomes the version that scored them never saw, per label."""

    status: str
    served: int
    table: pd.DataFrame
    labelled: int = 0
    coverage: float = 0.0
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    unseen_labels: Mapping[str, int] = field(default_factory=dict)

    def answer_value(self, metric: str) -> float | None:
        """The answers' `metric` (None before any labelled row)."""
        return self.metrics.get("answer", {}).get(metric)


def live_performance(
    served: pd.DataFrame,
    labels: pd.DataFrame,
    key: str | None,
    target: str,
    task: str,
    metric: str,
    labels_of: LabelsOf | None = None,
) -> LivePerformance:
    """Metrics of the answering version(s) and of any shadowing challenger on the labelled rows.

    Outcomes may be text: each row's outcome is encoded with the labels of the version that scored it
    (`labels_of`); an outcome that version never saw is left out of its metrics and counted in `unseen_labels`.
    Without `labels_of`, outcomes are the numeric codes themselves."""
    empty = pd.DataFrame(columns=["role", "version", "rows", metric])
    if served.empty:
        return LivePerformance("no traffic", len(served), empty)
    if not key or key not in served.columns:
        return LivePerformance(f"no key: requests do not carry {key!r}, outcomes cannot be joined", len(served), empty)
    if labels.empty or target not in labels.columns:
        return LivePerformance("labels not arrived", len(served), empty)
    joined = served.merge(labels[[key, target]].drop_duplicates(key), on=key, how="inner")
    labelled, coverage = len(joined), round(len(joined) / len(served), 4)
    if joined.empty:
        return LivePerformance("labels not arrived", len(served), empty, labelled, coverage)
    answer = _answer_column(joined, task)
    rows = [
        _metric_row("answer", version, part, target, task, metric, labels_of, "_version", answer)
        for version, part in joined.groupby("_version")
    ]
    shadowed = joined.dropna(subset=["_shadow_prediction"])
    rows += [
        _metric_row("shadow", version, part, target, task, metric, labels_of, "_shadow_version", "_shadow_prediction")
        for version, part in shadowed.groupby("_shadow_version")
    ]
    y, scores, usable, unseen = _scored(task, joined[target], joined[answer], joined["_version"], labels_of)
    metrics = {"answer": task_metrics(task, y[usable], scores[usable]) if usable.any() else {}}
    status = "complete" if coverage >= 0.99 else "partial labels"
    return LivePerformance(status, len(served), pd.DataFrame(rows), labelled, coverage, metrics, unseen)


def _answer_column(frame: pd.DataFrame, task: str) -> str:
    """Where the answer's scores are: a multiclass answer's probabilities are logged in `_probabilities`."""
    return "_probabilities" if task == "multiclass" and "_probabilities" in frame.columns else "prediction"


def _metric_row(
    role: str,
    version: object,
    part: pd.DataFrame,
    target: str,
    task: str,
    metric: str,
    labels_of: LabelsOf | None,
    version_column: str,
    score_column: str,
) -> dict[str, Any]:
    y, scores, usable, _ = _scored(task, part[target], part[score_column], part[version_column], labels_of)
    value = task_metrics(task, y[usable], scores[usable]).get(metric) if usable.any() else None
    return {"role": role, "version": str(version), "rows": int(usable.sum()), metric: value}


def _scored(
    task: str,
    truth: pd.Series,
    scores: pd.Series,
    versions: pd.Series,
    labels_of: LabelsOf | None,
    classes: list[Any] | None = None,
) -> Scored:
    """(y, scores, usable, unseen) of joined rows, each row under the labels of the version that scored it.

    `usable` leaves out rows whose outcome that version never saw (counted per label in `unseen`) and multiclass
    rows without a probability vector of that version's classes. Multiclass codes and scores are on `classes`
    (default: the union of the versions' classes, scores aligned with `Labels.aligned`, 0 for a class a version
    does not know). Regression, or a version without labels: the outcomes are numbers already (as before)."""
    found = _labels_by_version(versions, labels_of) if task != "regression" else None
    if found is None:
        y = truth.to_numpy(dtype=np.float64)
        matrix = np.vstack(scores.to_list()) if task == "multiclass" else scores.to_numpy(dtype=float)
        return y, matrix, np.ones(len(y), dtype=bool), {}
    classes = list(classes or union_of(found.values()))
    y = np.full(len(truth), UNKNOWN)
    matrix = np.zeros(len(truth)) if task == "binary" else np.zeros((len(truth), len(classes)))
    unseen: Counter[str] = Counter()
    for version, labels in found.items():
        rows = (versions == version).to_numpy()
        y[rows], matrix[rows] = _version_rows(labels, truth[rows], scores[rows], classes)
        unseen.update(labels.unseen(truth[rows]))
    return y, matrix, y != UNKNOWN, dict(unseen.most_common())


def _labels_by_version(versions: pd.Series, labels_of: LabelsOf | None) -> dict[Any, Labels] | None:
    """The labels of each version in `versions` (by its value there); None when any version has none."""
    if labels_of is None:
        return None
    found = {version: labels_of(str(version)) for version in pd.unique(versions)}
    labelled = {version: labels for version, labels in found.items() if labels is not None}
    return labelled if len(labelled) == len(found) else None


def union_of(labels: Iterable[Labels]) -> list[Any]:
    """The classes of several versions, in the order they first appear."""
    return list(dict.fromkeys(c for one in labels for c in one.classes))


def _version_rows(
    labels: Labels, truth: pd.Series, scores: pd.Series, classes: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """One version's rows: outcome codes (UNKNOWN where it cannot be scored) and scores, on `classes`."""
    codes = labels.encode(truth)
    if labels.task == "binary":
        values = pd.to_numeric(scores, errors="coerce").to_numpy(dtype=np.float64)
        return np.where(np.isnan(values), UNKNOWN, codes), np.nan_to_num(values)
    size = len(labels.classes)
    fits = probability_vectors(scores, size).to_numpy(dtype=bool)
    matrix = np.zeros((len(truth), len(classes)))
    if fits.any():
        matrix[fits] = labels.aligned(np.vstack(scores[fits].to_list()), classes)
    on_classes = Labels(labels.task, tuple(classes)).encode(truth)
    return np.where((codes != UNKNOWN) & fits, on_classes, UNKNOWN), matrix


def paired_comparison(
    served: pd.DataFrame,
    labels: pd.DataFrame,
    key: str | None,
    target: str,
    task: str,
    metric: str,
    labels_of: LabelsOf | None = None,
) -> pd.DataFrame:
    """The champion against the other version scored on the same labelled requests: a challenger in shadow
    (scored beside the champion's answer) or canary (the champion scored beside the challenger's answer), or
    the previous champion scored beside a newly promoted one. `gain` > 0 means the other version did better.
    Both are scored on the rows whose outcome both know, multiclass on the union of their classes."""
    columns = ["champion", "other", "rows", "champion_value", "other_value", "gain"]
    if (
        served.empty
        or not key
        or key not in served.columns
        or labels.empty
        or target not in labels.columns
        or "_shadow_version" not in served.columns
    ):
        return pd.DataFrame(columns=columns)
    paired = served.dropna(subset=["_shadow_version", "_shadow_prediction"])
    paired = paired.merge(labels[[key, target]].drop_duplicates(key), on=key, how="inner")
    if paired.empty:
        return pd.DataFrame(columns=columns)
    canary = (paired["_routed"] == "canary") if "_routed" in paired.columns else pd.Series(False, paired.index)
    answer = paired[_answer_column(paired, task)]
    frame = pd.DataFrame(
        {
            "champion": paired["_shadow_version"].where(canary, paired["_version"]).astype(str),
            "other": paired["_version"].where(canary, paired["_shadow_version"]).astype(str),
            "champion_prediction": paired["_shadow_prediction"].where(canary, answer),
            "other_prediction": answer.where(canary, paired["_shadow_prediction"]),
            "y": paired[target],
        }
    )
    rows = [
        _pair_row(str(champion), str(other), part, task, metric, labels_of)
        for (champion, other), part in frame.groupby(["champion", "other"])
    ]
    return pd.DataFrame(rows, columns=columns)


def _pair_row(
    champion: str, other: str, part: pd.DataFrame, task: str, metric: str, labels_of: LabelsOf | None
) -> dict[str, Any]:
    found = _labels_by_version(pd.Series([champion, other]), labels_of) if task == "multiclass" else None
    classes = union_of(found.values()) if found else None
    y_old, old_scores, old_usable, _ = _scored(
        task, part["y"], part["champion_prediction"], part["champion"], labels_of, classes
    )
    y_new, new_scores, new_usable, _ = _scored(
        task, part["y"], part["other_prediction"], part["other"], labels_of, classes
    )
    usable = old_usable & new_usable
    old = task_metrics(task, y_old[usable], old_scores[usable]).get(metric) if usable.any() else None
    new = task_metrics(task, y_new[usable], new_scores[usable]).get(metric) if usable.any() else None
    gain = None if old is None or new is None else improvement(metric, new, old)
    return {
        "champion": champion,
        "other": other,
        "rows": int(usable.sum()),
        "champion_value": old,
        "other_value": new,
        "gain": gain,
    }


@dataclass(frozen=True, slots=True)
class PairedDay:
    """One day's paired comparison of the champion with another version on the same labelled requests: `gain`
    > 0 means the other did better (None: no rows to compare on)."""

    day: str
    rows: int
    gain: float | None

    @classmethod
    def from_metadata(cls, day: str, entry: Mapping[str, Any]) -> PairedDay:
        """A row of `paired_comparison` as the performance asset's metadata keeps it, for `day`."""
        return cls(day, int(entry.get("rows") or 0), entry.get("gain"))


@dataclass(frozen=True, slots=True)
class AnsweredRows:
    """A version's live metric over the labelled rows it answered on one day (`value` None: not computed)."""

    rows: int
    value: float | None

    @classmethod
    def by_version(cls, entry: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, AnsweredRows]:
        """One day's `answered_by_version` as the performance asset's metadata keeps it: {version: {"rows": n,
        metric: value}}."""
        return {version: cls(int(v.get("rows") or 0), v.get(metric)) for version, v in entry.items()}


def pooled(samples: Iterable[tuple[int, float | None]]) -> tuple[int, float | None]:
    """Rows and the row-weighted mean of the values over daily (rows, value) samples; samples without rows or
    value do not count."""
    usable = [(rows, value) for rows, value in samples if rows and value is not None]
    total = sum(rows for rows, _ in usable)
    return total, (sum(rows * value for rows, value in usable) / total if total else None)


@dataclass(frozen=True)
class Verdict:
    """A decision on a challenger ("promote", "retire" or "wait") or on a fresh champion ("rollback", "keep" or
    "wait"), with why, the pooled gain, the rows and the days it rests on."""

    decision: Literal["promote", "retire", "wait", "rollback", "keep"]
    reason: str
    gain: float | None = None
    rows: int = 0
    days: tuple[str, ...] = ()


def judge_challenger(days: Sequence[PairedDay], trial_days: int, min_rows: int, min_improvement: float) -> Verdict:
    """Decide on a challenger from its daily paired comparisons with the champion.

    The newest `trial_days` days with a comparison are pooled (row-weighted mean gain). Too few days or rows:
    wait. Then the challenger wins when it does better by at least `min_improvement`, and is retired otherwise.
    """
    usable = sorted((d for d in days if d.rows and d.gain is not None), key=lambda d: d.day)
    if len(usable) < trial_days:
        return Verdict("wait", f"{len(usable)} of {trial_days} days with labelled paired traffic so far")
    window = usable[-trial_days:]
    rows, gain = pooled((d.rows, d.gain) for d in window)
    names = tuple(d.day for d in window)
    if rows < min_rows or gain is None:  # no gain: no rows
        return Verdict(
            "wait", f"{rows} labelled paired rows over {names[0]}..{names[-1]}; need {min_rows}", rows=rows, days=names
        )
    wins = sum(1 for d in window if d.gain is not None and d.gain > 0)
    summary = (
        f"gain {gain:+.4f} over {len(window)} days ({names[0]}..{names[-1]}, {rows} rows; better on "
        f"{wins} of {len(window)} days); needed more than 0 and at least {min_improvement}"
    )
    if gain > 0 and gain >= min_improvement:
        return Verdict("promote", f"challenger wins: {summary}", gain, rows, names)
    return Verdict("retire", f"challenger does not win: {summary}", gain, rows, names)


def judge_rollback(
    paired_days: Sequence[PairedDay],
    answered_days: Sequence[Mapping[str, AnsweredRows]],
    champion: str,
    previous: str,
    metric: str,
    tolerance: float,
    min_rows: int,
) -> Verdict:
    """Decide whether a fresh champion goes back to the previous one: "rollback", "keep" or "wait".

    `paired_days` are the daily paired comparisons of `champion` with `previous` (`gain`: how much better
    `previous` did on the same labelled requests); `answered_days` are each day's metric per version that
    answered (`{version: AnsweredRows}`). Pairs are the fair test, so they decide
    once they hold `min_rows`; without them (an image that serves one model) each version is judged on the days
    it answered, once both have `min_rows`; else wait. The champion is rolled back when `previous` does better
    by more than `tolerance`, and kept otherwise. The verdict's `gain` is how much better `previous` did.
    """
    rows, previous_gain = pooled((d.rows, d.gain) for d in paired_days)
    days = tuple(sorted(d.day for d in paired_days if d.rows and d.gain is not None))
    if rows >= max(min_rows, 1) and previous_gain is not None:  # rows, so a gain
        how = f"on the same {rows} labelled requests"
    else:  # no pairs: each version on the days it answered
        (new_rows, new_value), (old_rows, old_value) = (
            pooled((a[v].rows, a[v].value) for a in answered_days if v in a) for v in (champion, previous)
        )
        if min(new_rows, old_rows) < max(min_rows, 1) or new_value is None or old_value is None:
            return Verdict(
                "wait",
                f"not enough labelled live rows yet (paired: {rows}; v{champion}: {new_rows}, "
                f"v{previous}: {old_rows}; need {min_rows})",
                rows=rows,
            )
        previous_gain = improvement(metric, old_value, new_value)
        how = f"on the days each answered (v{champion}: {new_rows} rows, v{previous}: {old_rows} rows)"
        rows, days = new_rows + old_rows, ()
    if previous_gain <= tolerance:
        return Verdict(
            "keep",
            f"v{champion} kept: v{previous} does better by {previous_gain:+.4f} {metric} {how}, within {tolerance}",
            previous_gain,
            rows,
            days,
        )
    return Verdict(
        "rollback",
        f"live {metric} of v{champion} trails v{previous} by {previous_gain:.4f} > {tolerance} {how}",
        previous_gain,
        rows,
        days,
    )
