"""Replay days of real traffic through a live endpoint, optionally with an injected drift.

Each replayed day's rows are built exactly as the pipeline builds features, then sent to the endpoint with
their key and event time, so the prediction log can be joined with outcomes and lands in the right daily
partitions. Outcomes (the labels) arrive when the data pipeline materializes that day's features.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from ml_platform.core.features import build_features
from ml_platform.core.sources import open_source
from ml_platform.spec import ModelSpec

DRIFTS = ("hot_weather", "late_departures", "swap_carriers")


def inject(raw: pd.DataFrame, drift: str | None, seed: int = 0) -> pd.DataFrame:
    """A plausible shift of the inputs: hotter weather, later departures, or carriers swapped around."""
    if not drift:
        return raw
    frame = raw.copy()
    if drift == "hot_weather":
        frame["temp"] = frame["temp"] + 30
        frame["humid"] = (frame["humid"] * 0.5).clip(0, 100)
    elif drift == "late_departures":
        frame["sched_dep_time"] = ((frame["sched_dep_time"] // 100 + 6) % 24) * 100 + frame["sched_dep_time"] % 100
    elif drift == "swap_carriers":
        carriers = sorted(frame["carrier"].dropna().unique())
        shuffled = np.random.default_rng(seed).permutation(carriers)
        frame["carrier"] = frame["carrier"].map(dict(zip(carriers, shuffled, strict=True)))
    else:
        raise ValueError(f"unknown drift {drift!r}; choose one of {', '.join(DRIFTS)}")
    return frame


def simulate(
    spec: ModelSpec,
    url: str,
    days: list[date],
    pin_dir: Path,
    drift: str | None = None,
    batch: int = 50,
    token: str | None = None,
) -> list[dict]:
    """Send each day's rows to `url` in requests of `batch` rows; returns one summary per day."""
    source = open_source(spec, pin_dir)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    summaries = []
    for day in days:
        start = datetime.combine(day, datetime.min.time())
        raw = inject(source.load(start, start + timedelta(days=1)), drift)
        features, _ = build_features(raw, spec)
        columns = [c for c in (spec.key, spec.timestamp, *spec.features.names) if c]
        rows = features[columns].assign(**{spec.timestamp: features[spec.timestamp].astype(str)})
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows.to_dict(orient="records")
        ]
        answered = failed = 0
        versions: set[str] = set()
        for i in range(0, len(records), batch):
            response = session.post(
                f"{url}/v1/models/{spec.name}/predict",
                json={"instances": records[i : i + batch]},
                headers=headers,
                timeout=30,
            )
            if response.status_code == 200:
                answered += len(records[i : i + batch])
                versions.add(response.json()["version"])
            else:
                failed += len(records[i : i + batch])
        summaries.append(
            {
                "day": day.isoformat(),
                "rows": len(records),
                "answered": answered,
                "failed": failed,
                "versions": sorted(versions),
                "drift": drift,
            }
        )
    return summaries
