"""The bundled `flight_delay` spec trained with and without `training.refit`, scored on the same test days.

For each of a few 56-day training windows of the 2013 flights (the bundled spec's window, validation and test
days), build the features with the platform's own functions, train once with refit (the final model also
trains on the validation days, with the rounds early stopping chose) and once without (the early-stopping
model), and score both on the window's untouched test days with the gate metric.

    python benchmarks/refit.py [--windows 6]

Prints JSON lines: one {"figure": "refit_holdout_metric", "refit": ..., "no_refit": ..., "metric": "roc_auc",
"test_days": ...} per window, then {"figure": "refit_holdout_metric_mean", ...} over the windows.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import date, datetime, timedelta


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=6, help="training windows spread over the year")
    args = parser.parse_args()

    from ml_platform.core.evaluation import score
    from ml_platform.core.features import build_features
    from ml_platform.core.sources import nycflights13
    from ml_platform.core.training import split_by_time, train
    from ml_platform.core.training_run import metric_of
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    metric, window = metric_of(spec), spec.training.window_days
    on = spec.model_copy(update={"training": spec.training.model_copy(update={"refit": True})})
    off = spec.model_copy(update={"training": spec.training.model_copy(update={"refit": False})})
    replay = nycflights13.Replay(offset_days=0)  # the 2013 calendar itself
    # Weekly retraining partitions as the platform lays them out; the 21st is benchmarks/training.py's week.
    weeks = (365 - window) // 7 + 1
    chosen = sorted({round(i * (weeks - 1) / max(args.windows - 1, 1)) for i in range(args.windows)} | {20})
    gains = []
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
        fit = refitted.model.manifest["fit"]
        emit(
            figure="refit_holdout_metric",
            **values,
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
    emit(
        figure="refit_holdout_metric_mean",
        value=round(statistics.mean(gains), 5),
        median=round(statistics.median(gains), 5),
        metric=metric,
        windows=len(gains),
        better_with_refit=sum(g > 0 for g in gains),
        note="mean of (refit - no_refit) on each window's test days",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
