"""The bundled `flight_delay` spec trained with and without `training.refit`, scored on the same test days.

For each of a few 56-day training windows of the 2013 flights (the bundled spec's window, validation and test
days), build the features with the platform's own functions, train once with refit (the final model also
trains on the validation days, with the rounds early stopping chose) and once without (the early-stopping
model), and score both on the window's untouched test days with the gate metric.

The data is pinned: the windows are weeks of the 2013 calendar itself, whatever today's date.

    python benchmarks/refit.py [--quick] [--windows 6]

Prints JSON lines, figures in the contract's form (benchmarks/contract.py): one `refit_holdout_metric` per window
(case: the window's first day; value: with refit, peer: without, on the same test days), then
`refit_holdout_metric_mean` over the windows. `--quick` (the guard's form): one 28-day window, that of
`benchmarks/training.py --quick`'s second week (2013-06-04 → 2013-07-01); the same figures.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date, datetime, timedelta

from contract import figure, quick_option

#: The window (weeks after 2013-01-01) of benchmarks/training.py's second week, in every run; and of its quick
#: form (28 days, so 4 weeks later), the quick form's one window.
TRAINING_BENCHMARK_WINDOW = 18
QUICK_WINDOW, QUICK_WINDOW_DAYS = 22, 28


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=6, help="training windows spread over the year")
    quick_option(parser, "one 28-day window (benchmarks/training.py --quick's second week)")
    args = parser.parse_args()

    from ml_platform.core.evaluation import score
    from ml_platform.core.features import build_features
    from ml_platform.core.sources import nycflights13
    from ml_platform.core.training import split_by_time, train
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    if args.quick:
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"window_days": QUICK_WINDOW_DAYS})})
    metric, window = spec.gate_metric, spec.training.window_days
    on = spec.model_copy(update={"training": spec.training.model_copy(update={"refit": True})})
    off = spec.model_copy(update={"training": spec.training.model_copy(update={"refit": False})})
    replay = nycflights13.Replay(offset_days=0)  # the 2013 calendar itself
    # Weekly retraining partitions as the platform lays them out, and benchmarks/training.py's second week.
    weeks = (365 - window) // 7 + 1
    spread = {round(i * (weeks - 1) / max(args.windows - 1, 1)) for i in range(args.windows)}
    chosen = [QUICK_WINDOW] if args.quick else sorted(spread | {TRAINING_BENCHMARK_WINDOW})
    gains, refits, stops = [], [], []
    for week in chosen:
        first = date(2013, 1, 1) + timedelta(weeks=week)
        raw = nycflights13.load(
            replay,
            datetime.combine(first, datetime.min.time()),
            datetime.combine(first + timedelta(days=window), datetime.min.time()),
        )
        split = split_by_time(build_features(raw, spec)[0], spec)
        refitted, stopped = train(on, split), train(off, split)
        values = {
            name: round(score(result.model, split.test, metric), 5)
            for name, result in (("refit", refitted), ("no_refit", stopped))
        }
        gains.append(values["refit"] - values["no_refit"])
        refits.append(values["refit"])
        stops.append(values["no_refit"])
        fit = refitted.model.manifest["fit"]
        figure(
            "refit_holdout_metric",
            case=first.isoformat(),
            value=values["refit"],
            unit=metric,
            peer="the same spec without refit (the early-stopped model), the same test days",
            peer_value=values["no_refit"],
            better="higher",
            goal=None,  # one window may go either way; the mean carries the goal
            metric=metric,
            test_days=f"{split.test[spec.timestamp].min().date()} → {split.test[spec.timestamp].max().date()}",
            window=f"{first} → {first + timedelta(days=window - 1)}",
            rounds=refitted.best_iteration,
            rows={
                "train": len(split.train),
                "valid": len(split.valid),
                "test": len(split.test),
                "refit_fit": fit["rows"],
            },
        )
    figure(
        "refit_holdout_metric_mean",
        value=statistics.mean(refits),
        unit=metric,
        peer="the same spec without refit, mean over the same windows",
        peer_value=statistics.mean(stops),
        better="higher",
        goal=1.0,  # refit no worse on average
        gain_mean=round(statistics.mean(gains), 5),
        gain_median=round(statistics.median(gains), 5),
        metric=metric,
        windows=len(gains),
        better_with_refit=sum(g > 0 for g in gains),
        note="gain: refit - no_refit on each window's test days",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
