"""A larger `flight_delay`-like dataset, for measuring what the platform costs at millions of rows per window.

The bundled 2013 NYC flights hold about 1,000 departures a day, so a 56-day training window is some 55,000
rows: too few to show how loading, feature building and training scale. This script keeps the real data's
structure and signal and multiplies its volume:

- the day rows are the platform's own `nycflights13` rows (flights joined with the origin's hourly weather
  and the plane, `flight_id`, `scheduled_departure`), on the real 2013 calendar (no replay offset);
- each flight is replicated k times, k = ceil(rows_per_window / the real rows of the training window).
  Replica 0 is the real row unchanged. The other replicas get gaussian noise on the numeric features (a
  twentieth of each column's spread, clipped to what 2013 shows and to the spec's expectations; precipitation
  scaled by 5% noise instead, so dry hours stay dry), a scheduled departure moved by whole minutes
  within its day (the timestamp and `sched_dep_time` agree), an arrival delay moved by a few minutes (the
  target `arr_delay > 15` keeps its signal without being a copy), and with 5% probability another carrier,
  destination or plane manufacturer seen in the data (origin unchanged). `flight_id` becomes `<id>-r<j>`.

So the volume, the columns, their types, missing values and the calendar are realistic; the extra rows add
no information a model could learn beyond the real flights. One Parquet file per day under `OUT/raw/`, built
and written day by day (memory holds the 2013 table and one day's output, never the whole dataset), and
`OUT/flight_delay_scale.yaml`: the bundled spec over those files with one weekly retraining window covered,
gates opened (a benchmark measures cost, not model quality), and no freshness checks (2013 data is always
stale). A fixed seed gives identical files.

    python benchmarks/scale_data.py --rows-per-window 1000000 --out DIR [--window-days 56] [--days N] [--seed 0]

Prints which retraining partition's window holds `rows_per_window` rows, and last a JSON line:
{"rows_written": ..., "rows_per_window": ..., "replicas": ..., "days": ..., "retraining_partition": "...",
"spec": "..."}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ml_platform.core.sources import nycflights13
from ml_platform.spec import BUNDLED_SPECS, ModelSpec, load_spec

NAME = "flight_delay_scale"
FIRST_DAY = nycflights13.SOURCE_FIRST_DAY
REAL_CALENDAR = nycflights13.Replay(offset_days=0)  # dates stay in 2013
TIMESTAMP, KEY = nycflights13.TIMESTAMP, nycflights13.KEY

FEATURE_NOISE = 0.05  # gaussian sigma as a fraction of the column's standard deviation over 2013
TARGET_NOISE = 0.1  # the same for arr_delay: about 4.5 minutes
CATEGORY_NOISE = 0.05  # probability that a replica's carrier / dest / manufacturer is another level
# How each jittered column is kept valid: rounded to whole units, or scaled (zeros stay zero).
ROUNDED = {"distance", "plane_year", "plane_seats", "arr_delay"}
SCALED = {"precip"}
NOISY_CATEGORIES = ("carrier", "dest", "plane_manufacturer")


@lru_cache(maxsize=1)
def bundled_spec() -> dict:
    """The bundled flight_delay spec as data: the generated spec and the noise's bounds follow it."""
    return yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())


def scale_spec(raw_dir: Path, start: date, end: date, window_days: int) -> dict:
    """The bundled spec over the generated files: same features, target and expectations; a cost benchmark's
    gates (any model promotes), and no freshness (the data is from 2013)."""
    data = bundled_spec()
    spec = {
        **data,
        "name": NAME,
        "description": f"{data['description']} Replicated real flights for scale benchmarks "
        "(benchmarks/scale_data.py).",
        "source": {"kind": "files", "path": f"{raw_dir.resolve()}/{{date}}.parquet"},
        "partitions": {"cadence": "daily", "start": start, "end": end},
    }
    spec["training"] = {
        **data["training"],
        "engine": "local",
        "num_boost_round": 300,
        "early_stopping_rounds": 50,  # the platform's default, so the engines are compared as a spec gets them
        "window_days": window_days,
    }
    gates = {key: value for key, value in data["gates"].items() if key != "fairness"}
    spec["gates"] = {**gates, "metric": "roc_auc", "min": 0.5, "max_regression": 1.0}
    spec["monitoring"] = {
        key: value for key, value in data["monitoring"].items() if key not in ("model_freshness", "endpoint_freshness")
    }
    return spec


def retraining_window(spec: ModelSpec) -> tuple[str, date, date]:
    """The newest retraining partition whose whole window lies in the data, and its window [start, end),
    from the platform's own partition definitions (a weekly partition trains on the window_days ending with
    its week)."""
    from ml_platform.defs.partitions import data_partitions, training_partitions  # imports Dagster

    data = data_partitions(spec, spec.source.bind(spec.name, spec.timestamp, Path(".")))  # files pin nothing
    training = training_partitions(spec, data)
    key = training.get_last_partition_key()
    if key is None:
        raise ValueError(f"{spec.path}: no retraining partition fits in the data")
    end = training.time_window_for_partition_key(key).end.date()
    start = end - timedelta(days=spec.training.window_days)
    if start < data.start.date():
        raise ValueError(f"{spec.path}: retraining partition {key} would train on days before the data")
    return key, start, end


@lru_cache(maxsize=1)
def column_stats() -> dict:
    """Per column over all of 2013: the noise's sigma and the clip range (observed, within the spec's
    expectations); per noisy categorical, the levels a replica may switch to."""
    table = nycflights13.source_table()
    expectations = bundled_spec()["expectations"]["columns"]
    numeric = {"sched_dep_time": (table["sched_dep_time"] // 100) * 60 + table["sched_dep_time"] % 100}
    for column in [*bundled_spec()["features"]["numeric"], "arr_delay"]:
        numeric.setdefault(column, table[column])
    stats: dict[str, Any] = {}
    for column, values in numeric.items():
        rule = expectations.get(column, {})
        low, high = max(values.min(), rule.get("min", -np.inf)), min(values.max(), rule.get("max", np.inf))
        scale = TARGET_NOISE if column == "arr_delay" else FEATURE_NOISE
        stats[column] = (scale * values.std(), low, high)
    stats["sched_dep_time"] = (stats["sched_dep_time"][0], 0, 23 * 60 + 59)  # any minute of the day
    for column in NOISY_CATEGORIES:
        levels = sorted(table[column].dropna().unique())
        allowed = expectations.get(column, {}).get("allowed")
        stats[column] = np.array([v for v in levels if allowed is None or v in allowed], dtype=object)
    return stats


def _jitter_numeric(columns: dict, n: int, rng: np.random.Generator) -> None:
    """Noise on replicas' numeric features (rows n onwards), in place; NaN stays NaN."""
    stats = column_stats()
    for column in [*bundled_spec()["features"]["numeric"], "arr_delay"]:
        if column == "sched_dep_time":
            continue
        sigma, low, high = stats[column]
        values = columns[column][n:]
        noise = rng.standard_normal(len(values))
        if column in SCALED:
            jittered = values * (1 + noise * FEATURE_NOISE)
        else:
            jittered = values + noise * sigma
        if column in ROUNDED:
            jittered = np.round(jittered)
        columns[column][n:] = np.clip(jittered, low, high).astype(values.dtype)


def _jitter_departure(columns: dict, day: date, n: int, rng: np.random.Generator) -> None:
    """Moves replicas' scheduled departures by whole minutes within their day; `sched_dep_time` (HHMM) and
    the timestamp stay in agreement."""
    sigma, low, high = column_stats()["sched_dep_time"]
    hhmm = columns["sched_dep_time"][n:]
    minutes = (hhmm // 100) * 60 + hhmm % 100
    minutes = np.clip(minutes + np.round(rng.standard_normal(len(minutes)) * sigma).astype(np.int64), low, high)
    columns["sched_dep_time"][n:] = (minutes // 60) * 100 + minutes % 60
    midnight = np.datetime64(day.isoformat(), "ns")
    columns[TIMESTAMP][n:] = midnight + minutes.astype("timedelta64[m]").astype("timedelta64[ns]")


def _swap_categories(columns: dict, n: int, rng: np.random.Generator) -> None:
    """With probability CATEGORY_NOISE, a replica's level becomes another level of the column (uniformly
    among the others); missing values stay missing."""
    for column in NOISY_CATEGORIES:
        levels = column_stats()[column]
        values = columns[column][n:]
        chosen = rng.random(len(values)) < CATEGORY_NOISE
        position = pd.Index(levels).get_indexer(values)
        swap = chosen & (position >= 0)
        shift = rng.integers(1, len(levels), size=len(values))  # never 0: a different level
        values[swap] = levels[(position[swap] + shift[swap]) % len(levels)]


def replicate_day(day: date, replicas: int, seed: int) -> pd.DataFrame:
    """One day of the real flights, each row `replicas` times (replica 0 unchanged), ordered by departure."""
    start = datetime.combine(day, datetime.min.time())
    base = nycflights13.load(REAL_CALENDAR, start, start + timedelta(days=1))
    n = len(base)
    rng = np.random.default_rng([seed, day.toordinal()])
    columns = {column: np.tile(base[column].to_numpy(), replicas) for column in base.columns}
    ids = base[KEY]
    columns[KEY] = np.concatenate([ids.to_numpy(), *[(ids + f"-r{j}").to_numpy() for j in range(1, replicas)]])
    _jitter_numeric(columns, n, rng)
    _jitter_departure(columns, day, n, rng)
    _swap_categories(columns, n, rng)
    order = np.argsort(columns[TIMESTAMP], kind="stable")
    return pd.DataFrame({column: values[order] for column, values in columns.items()})


def write_day(frame: pd.DataFrame, path: Path) -> None:
    """Written beside the target and renamed, so a file that exists is complete."""
    partial = path.with_suffix(".parquet.partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)


def real_rows(start: date, end: date) -> int:
    """How many real flights depart in [start, end)."""
    stamps = nycflights13.source_table()[TIMESTAMP].to_numpy()
    lo, hi = np.searchsorted(stamps, [np.datetime64(start, "ns"), np.datetime64(end, "ns")])
    return int(hi - lo)


def run(out: Path, rows_per_window: int, window_days: int = 56, days: int | None = None, seed: int = 0) -> dict:
    """Writes the spec and the day files; returns the summary the command line prints."""
    out = Path(out).resolve()
    days = window_days + 7 if days is None else days
    end = FIRST_DAY + timedelta(days=days)
    if end > nycflights13.SOURCE_LAST_DAY + timedelta(days=1):
        raise ValueError(f"days: found {days}; allowed: at most the 365 days of 2013")
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    spec_path = out / f"{NAME}.yaml"
    spec_path.write_text(
        "# Generated by benchmarks/scale_data.py: the bundled flight_delay spec over replicated "
        "2013 flights.\n" + yaml.safe_dump(scale_spec(raw, FIRST_DAY, end, window_days), sort_keys=False)
    )
    key, window_start, window_end = retraining_window(load_spec(spec_path))
    replicas = math.ceil(rows_per_window / real_rows(window_start, window_end))
    print(
        f"retraining partition {key} trains on {window_start} … {window_end - timedelta(days=1)}: "
        f"{real_rows(window_start, window_end)} real flights × {replicas} replicas",
        file=sys.stderr,
    )
    written = window_rows = 0
    for offset in range(days):
        day = FIRST_DAY + timedelta(days=offset)
        frame = replicate_day(day, replicas, seed)
        write_day(frame, raw / f"{day.isoformat()}.parquet")
        written += len(frame)
        window_rows += len(frame) if window_start <= day < window_end else 0
        del frame
    return {
        "rows_written": written,
        "rows_per_window": window_rows,
        "replicas": replicas,
        "days": days,
        "retraining_partition": key,
        "spec": str(spec_path),
    }


def generate(out: Path, rows_per_window: int, window_days: int = 56, days: int | None = None, seed: int = 0) -> Path:
    """Writes the dataset and its spec under `out`; returns the spec's path."""
    return Path(run(out, rows_per_window, window_days, days, seed)["spec"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows-per-window",
        type=int,
        required=True,
        help="rows the retraining window should hold (rounded up to whole replicas)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for raw/*.parquet and the spec")
    parser.add_argument("--window-days", type=int, default=56, help="training.window_days (a multiple of 7)")
    parser.add_argument("--days", type=int, default=None, help="days from 2013-01-01 (default: window + 7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = run(args.out, args.rows_per_window, args.window_days, args.days, args.seed)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
