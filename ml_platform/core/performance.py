"""Live performance: served predictions joined with outcomes that arrive later (delayed labels), and the
champion compared with another version (a challenger, or the previous champion) on the same outcomes.

A missing day of traffic, a log without keys, or labels that have not arrived yet are statuses, not errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_platform.core.evaluation import improvement, task_metrics


def live_performance(served: pd.DataFrame, labels: pd.DataFrame, key: str | None, target: str, task: str,
                     metric: str) -> dict:
    """Metrics of the answering version(s) and of any shadowing challenger on the labelled rows."""
    empty = pd.DataFrame(columns=["role", "version", "rows", metric])
    out = {"served": int(len(served)), "labelled": 0, "coverage": 0.0, "metrics": {}, "table": empty}
    if served.empty:
        return {**out, "status": "no traffic"}
    if not key or key not in served.columns:
        return {**out, "status": f"no key: requests do not carry {key!r}, outcomes cannot be joined"}
    if labels.empty or target not in labels.columns:
        return {**out, "status": "labels not arrived"}
    joined = served.merge(labels[[key, target]].drop_duplicates(key), on=key, how="inner")
    out.update(labelled=int(len(joined)), coverage=round(len(joined) / len(served), 4))
    if joined.empty:
        return {**out, "status": "labels not arrived"}
    y = joined[target].to_numpy(dtype=np.float64)
    rows = []
    for version, part in joined.groupby("_version"):
        values = task_metrics(task, part[target].to_numpy(dtype=np.float64), part["prediction"].to_numpy(dtype=float))
        rows.append({"role": "answer", "version": str(version), "rows": len(part), metric: values.get(metric)})
    shadowed = joined.dropna(subset=["_shadow_prediction"])
    for version, part in shadowed.groupby("_shadow_version"):
        values = task_metrics(task, part[target].to_numpy(dtype=np.float64),
                              part["_shadow_prediction"].to_numpy(dtype=float))
        rows.append({"role": "shadow", "version": str(version), "rows": len(part), metric: values.get(metric)})
    overall = task_metrics(task, y, joined["prediction"].to_numpy(dtype=float))
    metrics = {"answer": overall}
    status = "complete" if out["coverage"] >= 0.99 else "partial labels"
    return {**out, "status": status, "metrics": metrics, "table": pd.DataFrame(rows)}


def paired_comparison(served: pd.DataFrame, labels: pd.DataFrame, key: str | None, target: str, task: str,
                      metric: str) -> pd.DataFrame:
    """The champion against the other version scored on the same labelled requests: a challenger in shadow
    (scored beside the champion's answer) or canary (the champion scored beside the challenger's answer), or
    the previous champion scored beside a newly promoted one. `gain` > 0 means the other version did better."""
    columns = ["champion", "other", "rows", "champion_value", "other_value", "gain"]
    if served.empty or not key or key not in served.columns or labels.empty or target not in labels.columns \
            or "_shadow_version" not in served.columns:
        return pd.DataFrame(columns=columns)
    paired = served.dropna(subset=["_shadow_version", "_shadow_prediction"])
    paired = paired.merge(labels[[key, target]].drop_duplicates(key), on=key, how="inner")
    if paired.empty:
        return pd.DataFrame(columns=columns)
    canary = (paired["_routed"] == "canary") if "_routed" in paired.columns else pd.Series(False, paired.index)
    frame = pd.DataFrame({
        "champion": paired["_shadow_version"].where(canary, paired["_version"]).astype(str),
        "other": paired["_version"].where(canary, paired["_shadow_version"]).astype(str),
        "champion_prediction": paired["_shadow_prediction"].where(canary, paired["prediction"]).astype(float),
        "other_prediction": paired["prediction"].where(canary, paired["_shadow_prediction"]).astype(float),
        "y": paired[target].astype(np.float64)})
    rows = []
    for (champion, other), part in frame.groupby(["champion", "other"]):
        y = part["y"].to_numpy()
        old = task_metrics(task, y, part["champion_prediction"].to_numpy()).get(metric)
        new = task_metrics(task, y, part["other_prediction"].to_numpy()).get(metric)
        gain = None if old is None or new is None else improvement(metric, new, old)
        rows.append({"champion": champion, "other": other, "rows": len(part),
                     "champion_value": old, "other_value": new, "gain": gain})
    return pd.DataFrame(rows, columns=columns)


def pooled(days: list[dict], field: str = "gain") -> tuple[int, float | None]:
    """Rows and the row-weighted mean of `field` over daily results (each with `rows`)."""
    usable = [d for d in days if d.get("rows") and d.get(field) is not None]
    rows = sum(int(d["rows"]) for d in usable)
    return rows, (sum(d["rows"] * d[field] for d in usable) / rows if rows else None)


@dataclass(frozen=True)
class Verdict:
    decision: str          # "promote", "retire" or "wait" (challengers); "rollback", "keep" or "wait" (rollbacks)
    reason: str
    gain: float | None = None
    rows: int = 0
    days: tuple[str, ...] = ()


def judge_challenger(days: list[dict], trial_days: int, min_rows: int, min_improvement: float) -> Verdict:
    """Decide on a challenger from its daily paired comparisons (`day`, `rows`, `gain`) with the champion.

    The newest `trial_days` days with a comparison are pooled (row-weighted mean gain). Too few days or rows:
    wait. Then the challenger wins when it does better by at least `min_improvement`, and is retired otherwise.
    """
    usable = sorted((d for d in days if d.get("rows") and d.get("gain") is not None), key=lambda d: d["day"])
    if len(usable) < trial_days:
        return Verdict("wait", f"{len(usable)} of {trial_days} days with labelled paired traffic so far")
    window = usable[-trial_days:]
    rows, gain = pooled(window)
    names = tuple(d["day"] for d in window)
    if rows < min_rows:
        return Verdict("wait", f"{rows} labelled paired rows over {names[0]}..{names[-1]}; need {min_rows}",
                       rows=rows, days=names)
    wins = sum(1 for d in window if d["gain"] > 0)
    summary = (f"gain {gain:+.4f} over {len(window)} days ({names[0]}..{names[-1]}, {rows} rows; better on "
               f"{wins} of {len(window)} days); needed more than 0 and at least {min_improvement}")
    if gain > 0 and gain >= min_improvement:
        return Verdict("promote", f"challenger wins: {summary}", gain, rows, names)
    return Verdict("retire", f"challenger does not win: {summary}", gain, rows, names)


def judge_rollback(paired_days: list[dict], answered_days: list[dict], champion: str, previous: str, metric: str,
                   tolerance: float, min_rows: int) -> Verdict:
    """Decide whether a fresh champion goes back to the previous one: "rollback", "keep" or "wait".

    `paired_days` are the daily paired comparisons of `champion` with `previous` (`day`, `rows`, `gain`: how
    much better `previous` did on the same labelled requests); `answered_days` are each day's metric per
    version that answered (`{version: {"rows": n, metric: value}}`). Pairs are the fair test, so they decide
    once they hold `min_rows`; without them (an image that serves one model) each version is judged on the days
    it answered, once both have `min_rows`; else wait. The champion is rolled back when `previous` does better
    by more than `tolerance`, and kept otherwise. The verdict's `gain` is how much better `previous` did.
    """
    rows, previous_gain = pooled(paired_days)
    days = tuple(sorted(d["day"] for d in paired_days if d.get("rows") and d.get("gain") is not None))
    if rows >= max(min_rows, 1):
        how = f"on the same {rows} labelled requests"
    else:  # no pairs: each version on the days it answered
        (new_rows, new_value), (old_rows, old_value) = (pooled([a[v] for a in answered_days if v in a], metric)
                                                        for v in (champion, previous))
        if min(new_rows, old_rows) < max(min_rows, 1):
            return Verdict("wait", f"not enough labelled live rows yet (paired: {rows}; v{champion}: {new_rows}, "
                                   f"v{previous}: {old_rows}; need {min_rows})", rows=rows)
        previous_gain = improvement(metric, old_value, new_value)
        how = f"on the days each answered (v{champion}: {new_rows} rows, v{previous}: {old_rows} rows)"
        rows, days = new_rows + old_rows, ()
    if previous_gain <= tolerance:
        return Verdict("keep", f"v{champion} kept: v{previous} does better by {previous_gain:+.4f} {metric} {how}, "
                               f"within {tolerance}", previous_gain, rows, days)
    return Verdict("rollback", f"live {metric} of v{champion} trails v{previous} by {previous_gain:.4f} > "
                               f"{tolerance} {how}", previous_gain, rows, days)
