"""Drift computation for one day against a model's reference: time and memory at 10k, 100k and 1M rows.

The reference is the profile of 42 days of real flight features (what a model version stores); the live
"day" is real rows from later days, repeated to size. All 18 flight features plus the prediction are scored.
Prints JSON lines; the last is {"figure": "drift_1m_rows_s", "value": ..., "goal": 5, "met": ...}.

    python benchmarks/monitoring.py [--scenario]

--scenario also runs the closed-loop scenario (the real `dagster dev`, ml_platform_tests/test_closed_loop.py)
and prints the time from the first drifted day being logged to the new version serving.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from datetime import datetime

import numpy as np


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
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
    )
    timings = {}
    for rows in (10_000, 100_000, 1_000_000):
        day = live.sample(rows, replace=True, random_state=1).reset_index(drop=True)
        day["prediction"] = rng.random(rows)
        best = float("inf")
        for _ in range(3):
            tracemalloc.start()
            started = time.perf_counter()
            table = drift_table(day, profile, spec.monitoring.drift.warn, spec.monitoring.drift.fail)
            best = min(best, time.perf_counter() - started)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        timings[rows] = best
        emit(
            step="drift",
            rows=rows,
            seconds=round(best, 4),
            peak_mb=round(peak / 2**20, 1),
            rows_per_s=round(rows / best),
            features_scored=len(table),
        )
    if "--scenario" in sys.argv:
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
    growth = timings[1_000_000] / timings[100_000]
    emit(step="scaling", ratio_1m_vs_100k=round(growth, 2), note="10x the rows; linear means about 10")
    value = timings[1_000_000]
    emit(figure="drift_1m_rows_s", value=round(value, 3), goal=5, met=bool(value < 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
