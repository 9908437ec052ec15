"""Live performance: served predictions joined with outcomes that arrive later (delayed labels).

A missing day of traffic, a log without keys, or labels that have not arrived yet are statuses, not errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_platform.core.evaluation import task_metrics


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
