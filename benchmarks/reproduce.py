"""`ml-platform reproduce` against the retrains that made the versions it reproduces, in one run.

A production home on pinned data (`contract.REPLAY_OFFSET_WEEKS`, set up as benchmarks/review.py sets it up):
`flight_delay`'s features for the windows of the weeks from 2013-06-18 on, and v1 trained on the first. Then
each following week is retrained as users launch it from a terminal (`dagster job execute -j
flight_delay_retrain`, a fresh process), registering the next version, and every version is reproduced with
`ml-platform reproduce flight_delay N --json` (a fresh process):

- `reproduce_vs_retrain_ratio`: the median reproduce of a version ÷ the median retrain that made it (the
  versions retrained in this run), same run. Goal: at most 1.3.
- `reproduced_identical`: the fraction of versions whose reproduction is byte-identical (exit status 0:
  the same model file, manifest and held-out metrics). Goal: 1.0.

`--engine dask` retrains the following versions with `training.engine: dask` (v1 stays the local engine's): each
starts a local cluster in its run, and `reproduce` retrains each on a local cluster of its recorded size.

    python benchmarks/reproduce.py [--quick] [--weeks 5] [--engine dask]

`--quick`: a 28-day window and two versions (v1, then one timed retrain); the same figures. It is not in the
guard: its setup alone (a backfill and two retrains as fresh processes) takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml
from contract import emit, figure, quick_option
from review import BIN, REPO, production, retrain_command, timed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weeks", type=int, default=5, help="versions to make and reproduce (the first untimed)")
    quick_option(parser, "a 28-day window and two versions")
    parser.add_argument("--engine", choices=["local", "dask"], default="local", help="the retrains' training.engine")
    args = parser.parse_args()
    weeks = 2 if args.quick else max(args.weeks, 2)
    with tempfile.TemporaryDirectory(prefix="ml_platform_reproduce_bench_") as folder:
        env, specs, first_week = production(Path(folder), window_days=28 if args.quick else 56, weeks=weeks)
        spec_file = specs / "flight_delay.yaml"  # every retrain passes its gates: this measures time, not quality
        data = yaml.safe_load(spec_file.read_text())
        data["gates"]["min"] = 0.0
        data["training"]["engine"] = args.engine
        spec_file.write_text(yaml.safe_dump(data))
        retrains: dict[str, float] = {}
        for turn in range(1, weeks):
            week = (date.fromisoformat(first_week) + timedelta(weeks=turn)).isoformat()
            retrains[str(turn + 1)] = timed(retrain_command(week), env)
        reproduces, verdicts = {}, {}
        for version in [str(v) for v in range(1, weeks + 1)]:
            reproduces[version], verdicts[version] = reproduce(version, env)
        emit(step="runs", engine=args.engine, retrain_s=retrains, reproduce_s=reproduces, verdicts=verdicts)

    reproduce_s = statistics.median(reproduces[v] for v in retrains)
    retrain_s = statistics.median(retrains.values())
    figure(
        "reproduce_vs_retrain_ratio",
        value=reproduce_s,
        unit="s",
        peer="the retrains that made the same versions (dagster job execute), same run",
        peer_value=retrain_s,
        better="lower",
        goal=1.3,
        versions=len(retrains),
        engine=args.engine,
    )
    identical = sum(v == "identical" for v in verdicts.values()) / len(verdicts)
    figure(
        "reproduced_identical",
        value=identical,
        unit="fraction of versions",
        peer="every version",
        peer_value=1.0,
        better="higher",
        goal=1.0,
        versions=len(verdicts),
        engine=args.engine,
    )
    return 0


def reproduce(version: str, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of `ml-platform reproduce flight_delay VERSION` in a fresh process, and its verdict."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "ml-platform"), "reproduce", "flight_delay", version, "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = round(time.perf_counter() - started, 3)
    if done.returncode not in (0, 1, 2) or not done.stdout.strip():
        raise SystemExit(f"ml-platform reproduce failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    if result["verdict"] != "identical":
        emit(step="not identical", version=version, reason=result["reason"], differences=result["differences"])
    return elapsed, str(result["verdict"])


if __name__ == "__main__":
    sys.exit(main())
