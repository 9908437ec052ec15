"""Drift computation for one day against a model's reference: time and memory at 10k, 100k and 1M rows.

The reference is the profile of 42 days of real flight features (what a model version stores); the live
"day" is real rows from later days, repeated to size. All 18 flight features plus the prediction are scored,
the categorical ones as the feature step delivers them (pandas Categoricals).

The figure `drift_1m_rows_s` is the 1M-row day's drift table (best of the repetitions; goal 0.5 s). Its peer,
timed in turn with it on the same day, is a plain counting pass over every value with the ordinary
primitives: pandas `value_counts()` of each categorical column and `np.bincount(np.searchsorted(edges,
values))` of each numeric column (as float64) into its reference PSI edges. One untimed call on the smallest day comes
first, so no first-use import (scipy) or cache warm-up is in a timed call. Memory (tracemalloc's peak) is taken
in a separate, untimed call: tracing slows allocation.

    python benchmarks/monitoring.py [--quick] [--scenario]

--quick: 100k and 1M rows, best of 2 (the guard's form; ~10 s with building the reference, ~30 s with a 10x
slower drift). The full form: 10k, 100k and 1M rows, best of 5.
--scenario also runs the closed-loop scenario (the real `dagster dev`, ml_platform_tests/test_closed_loop.py)
and prints the time from the first drifted day being logged to the new version serving.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from contract import emit, figure, quick_option

GOAL_S = 0.5
PEER = (
    "one pass over every value of the same day: pandas value_counts() of each categorical column plus "
    "np.bincount(np.searchsorted(reference PSI edges, values)) of each numeric column as float64"
)


def least_work(day: pd.DataFrame, profile: Any) -> None:
    """The peer: count every value once with the cheapest primitives (no statistics, no conversions)."""
    for name in profile["categorical"]:
        day[name].value_counts()
    for name, ref in profile["numeric"].items():
        values = day[name].to_numpy(dtype=np.float64, na_value=np.nan)
        np.bincount(np.searchsorted(np.asarray(ref["edges"]), values, side="right"), minlength=len(ref["edges"]) + 1)


def best_of(repetitions: int, calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each call's best time, the calls taken in turn each repetition (so load drifts hit them alike)."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repetitions):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick_option(parser, "100k and 1M rows, best of 2")
    parser.add_argument("--scenario", action="store_true", help="also time the closed-loop scenario (minutes)")
    args = parser.parse_args()
    sizes, repetitions = ((100_000, 1_000_000), 2) if args.quick else ((10_000, 100_000, 1_000_000), 5)

    from ml_platform.core.drift import drift_table, reference_profile
    from ml_platform.core.features import build_features
    from ml_platform.core.sources import nycflights13
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    replay = nycflights13.Replay(0)
    reference, _ = build_features(nycflights13.load(replay, datetime(2013, 4, 1), datetime(2013, 5, 13)), spec)
    live, _ = build_features(nycflights13.load(replay, datetime(2013, 7, 1), datetime(2013, 8, 1)), spec)
    numeric, categorical = spec.features.all_numeric, spec.features.all_categorical
    rng = np.random.default_rng(0)
    reference = reference.assign(prediction=rng.random(len(reference)))
    profile = reference_profile(reference, [*numeric, "prediction"], categorical)
    emit(
        step="reference",
        rows=len(reference),
        features=len(numeric) + len(categorical) + 1,
        profile_bytes=len(json.dumps(profile)),
        categorical_dtypes=sorted({str(live[name].dtype) for name in categorical}),
    )
    warn, fail = spec.monitoring.drift.warn, spec.monitoring.drift.fail
    days = {}
    for rows in sizes:
        day = live.sample(rows, replace=True, random_state=1).reset_index(drop=True)
        days[rows] = day.assign(prediction=rng.random(rows))
    drift_table(days[sizes[0]], profile, warn, fail)  # untimed: first-use imports and warm-up
    timings: dict[int, dict[str, float]] = {}
    for rows, day in days.items():
        timings[rows] = best_of(
            repetitions,
            {"drift": partial(drift_table, day, profile, warn, fail), "peer": partial(least_work, day, profile)},
        )
        tracemalloc.start()
        table = drift_table(day, profile, warn, fail)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        seconds = timings[rows]["drift"]
        emit(
            step="drift",
            rows=rows,
            seconds=round(seconds, 4),
            peer_seconds=round(timings[rows]["peer"], 4),
            peak_mb=round(peak / 2**20, 1),
            rows_per_s=round(rows / seconds),
            features_scored=len(table),
        )
    if args.scenario:
        scenario()
    growth = timings[1_000_000]["drift"] / timings[100_000]["drift"]
    emit(step="scaling", ratio_1m_vs_100k=round(growth, 2), note="10x the rows; linear means about 10")
    value = timings[1_000_000]["drift"]
    figure(
        "drift_1m_rows_s",
        value=value,
        unit="s",
        peer=PEER,
        peer_value=timings[1_000_000]["peer"],
        better="lower",
        goal=GOAL_S,
        met=value <= GOAL_S,
        rows=1_000_000,
        features=len(numeric) + len(categorical) + 1,
        repetitions=repetitions,
        scaling_1m_vs_100k=round(growth, 2),
    )
    return 0


def scenario() -> None:
    """The closed-loop scenario's timings (its own test run, with the real `dagster dev`)."""
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "timings.json"
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(Path(__file__).resolve().parents[1] / "ml_platform_tests" / "test_closed_loop.py"),
            ],
            env={**os.environ, "ML_PLATFORM_SCENARIO_TIMINGS": str(out)},
            capture_output=True,
            text=True,
        )
        figures = json.loads(out.read_text()) if out.exists() else {}
        emit(
            step="scenario",
            passed=result.returncode == 0,
            scenario_s=round(time.perf_counter() - started, 1),
            **figures,
            note="includes the drift run, the sensor's 30 s interval, the retrain run and the reload",
        )


if __name__ == "__main__":
    sys.exit(main())
