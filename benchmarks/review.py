"""`ml-platform review` against the work it saves and the command it stands beside, in one run.

A production home on pinned data (`contract.REPLAY_OFFSET_WEEKS`): `flight_delay`'s features for the window of
the week of 2013-06-18 and its champion v1, trained on that window. Then, alternating, as fresh processes:

- `review_vs_retrain_ratio`: `ml-platform review` of a change to one model's LightGBM parameters (the candidate
  trained on the champion's window and scored beside it, read-only) against a retrain of the same window with
  the changed spec as users launch it from a terminal (`dagster job execute -j flight_delay_retrain`). Goal: at
  most 1.5. The two changed specs take turns, so no retrain is a no-op.
- `review_noop_s`: a review where nothing model-relevant changed, against `ml-platform check` of the same
  folder. Goal: at most 3 s.

    python benchmarks/review.py [--quick] [--repeats 3]

`--quick` (the guard's form): a 28-day window and one repeat; the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml
from contract import REPLAY_OFFSET_WEEKS, emit, figure, quick_option

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WEEK = "2013-06-18"  # the champion's training partition (the pinned replay's calendar)
LEAVES = (31, 15)  # the changed specs' num_leaves, in turn


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    quick_option(parser, "a 28-day window and one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="ml_platform_review_bench_") as folder:
        scratch = Path(folder)
        env, base, week = production(scratch, window_days=28 if args.quick else 56)
        heads = [changed_spec(base, scratch / f"head_{leaves}", leaves) for leaves in LEAVES]

        reviews, retrains, noops, checks = [], [], [], []
        for turn in range(repeats):
            head = heads[turn % 2]
            reviews.append(
                timed(
                    [BIN / "ml-platform", "review", "--base", base, "--head", head, "--json", scratch / "r.json"],
                    env,
                    ok=(0, 1),
                )
            )
            verdict = json.loads((scratch / "r.json").read_text())["models"][0]
            if verdict["candidate"] is None:
                raise SystemExit(f"the review trained no candidate: {verdict}")
            retrains.append(timed(retrain_command(week), {**env, "ML_PLATFORM_SPECS": str(head)}))
            noops.append(timed([BIN / "ml-platform", "review", "--base", base, "--head", base], env))
            checks.append(timed([BIN / "ml-platform", "check", base], env))
        emit(step="runs", review_s=reviews, retrain_s=retrains, noop_s=noops, check_s=checks)

        review, retrain = statistics.median(reviews), statistics.median(retrains)
        figure(
            "review_vs_retrain_ratio",
            value=review,
            unit="s",
            peer="a retrain of the same window with the changed spec (dagster job execute), same run",
            peer_value=retrain,
            better="lower",
            goal=1.5,
            candidate_seconds=verdict["candidate"]["seconds"],
        )
        noop, check = statistics.median(noops), statistics.median(checks)
        figure(
            "review_noop_s",
            value=noop,
            unit="s",
            peer="ml-platform check of the same folder, same run",
            peer_value=check,
            better="lower",
            goal="<= 3 s",
            met=noop <= 3.0,
        )
    return 0


def production(scratch: Path, window_days: int, weeks: int = 1) -> tuple[dict[str, str], Path, str]:
    """A home with the window's features stored and champion v1 trained on them; its environment, its specs
    folder and the champion's partition. `weeks` > 1 stores the features of the windows of as many weekly
    retraining partitions from the champion's on (benchmarks/reproduce.py retrains them)."""
    home, dagster_home, specs = scratch / "home", scratch / "dagster", scratch / "base"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    data = yaml.safe_load((REPO / "ml_platform" / "bundled_specs" / "flight_delay.yaml").read_text())
    data["source"]["offset_weeks"] = REPLAY_OFFSET_WEEKS
    data["training"]["window_days"] = window_days
    data["gates"]["max_regression"] = 1.0  # every candidate and retrain passes: this measures time, not quality
    data["gates"]["fairness"]["max_gap"] = 1.0
    specs.mkdir()
    (specs / "flight_delay.yaml").write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_PLATFORM_", "DAGSTER_"))}
    env.update(ML_PLATFORM_HOME=str(home), DAGSTER_HOME=str(dagster_home), ML_PLATFORM_SPECS=str(specs))
    week = (date.fromisoformat(WEEK) + timedelta(weeks=REPLAY_OFFSET_WEEKS)).isoformat()
    first = date.fromisoformat(week) + timedelta(days=7 - window_days)
    last = date.fromisoformat(week) + timedelta(days=7 * weeks - 1)
    backfill = [
        BIN / "dagster",
        "asset",
        "materialize",
        "-m",
        "ml_platform.definitions",
        "--select",
        "flight_delay/raw,flight_delay/features",
        "--partition-range",
        f"{first.isoformat()}...{last.isoformat()}",
    ]
    started = time.perf_counter()
    timed(backfill, env)
    timed(retrain_command(week), env)
    emit(step="setup", window=f"{first} → {last}", champion_week=week, seconds=round(time.perf_counter() - started, 1))
    return env, specs, week


def changed_spec(base: Path, folder: Path, leaves: int) -> Path:
    data = yaml.safe_load((base / "flight_delay.yaml").read_text())
    data["training"]["params"]["num_leaves"] = leaves
    folder.mkdir()
    (folder / "flight_delay.yaml").write_text(yaml.safe_dump(data))
    return folder


def retrain_command(week: str) -> list:
    return [
        BIN / "dagster",
        "job",
        "execute",
        "-m",
        "ml_platform.definitions",
        "-j",
        "flight_delay_retrain",
        "--tags",
        json.dumps({"dagster/partition": week}),
    ]


def timed(command: list, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    """Wall seconds of a fresh process; its failure (an exit status outside `ok`) ends the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(c) for c in command], env=env, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(str(c) for c in command[:4])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return round(elapsed, 3)


if __name__ == "__main__":
    sys.exit(main())
