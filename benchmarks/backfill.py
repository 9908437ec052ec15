"""Backfill a whole replayed year of `flight_delay/raw` and `flight_delay/features` in one run, beside the same
work done by the plain core functions.

Fresh temporary ML_PLATFORM_HOME and Dagster instance (the repository's dagster.yaml, as `make dev` has it), the real nycflights13 data,
the bundled spec with the replay pinned (`contract.REPLAY_OFFSET_WEEKS`: the 2013 calendar itself, all in the
past whatever today's date). The run is `flight_delay_data` over the partition range, single-run backfill,
`execute_in_process`. The peer, measured in the same process: one loop of the core functions without Dagster
(source load, Pandera validation, features, content hashes, one Parquet file per day and stage in a scratch
folder); the benchmark checks that it wrote the same data as the run.

Both are split by phase with timers in the code path: the assets report theirs (`phase_seconds` metadata on the
newest partition), the IO manager its writes (`write_seconds`), the benchmark times the IO manager's reads;
`dagster` is the run's time minus all of those (events, run and step bookkeeping, the checks' evaluation).
Both pay the source's first read of the year (its cache is cleared before each).

    python benchmarks/backfill.py [--quick]

Prints JSON lines: `setup`, `plain` and `run` (phases, seconds and CPU seconds), then the figure
`backfill_365_days_s` (the run's wall time; peer: the plain loop). `--quick`: the first 60 days, the same figure
with `days` saying how many.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from contract import REPLAY_OFFSET_WEEKS, emit, figure, quick_option

GOAL_S = 10
REPO = Path(__file__).resolve().parent.parent
DAYS, QUICK_DAYS = 365, 60
SAME_DATA_CHECKED = 5  # days whose stored files the benchmark compares between the run and the plain loop


class Clock:
    """Wall and CPU seconds of one measured piece."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> dict[str, float]:
        return {"s": round(time.perf_counter() - self.wall, 3), "cpu_s": round(time.process_time() - self.cpu, 3)}


def plain_backfill(spec, replay, first: date, days: int, folder: Path) -> dict:
    """The run's work without Dagster: raw → validated → features → one Parquet file per day and stage."""
    import numpy as np
    import pandas as pd

    from ml_platform.core.data_versions import content_hashes
    from ml_platform.core.features import build_features
    from ml_platform.core.phases import PhaseTimes
    from ml_platform.core.schema import validate
    from ml_platform.core.sources import nycflights13

    phases = PhaseTimes()
    keys = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    start = datetime.combine(first, datetime.min.time())
    with phases.phase("source_read"):
        raw = nycflights13.load(replay, start, start + timedelta(days=days))

    def by_day(frame):
        stamps = frame[spec.timestamp].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
        days_in = (stamps - np.datetime64(first)).astype(int)
        partition_of = pd.Series(np.asarray(keys, dtype=object)[days_in], index=frame.index)
        return partition_of, dict(iter(frame.groupby(partition_of, sort=False)))

    with phases.phase("split_and_versions"):
        raw_of, raw_days = by_day(raw)
    with phases.phase("validation"):
        report = validate(raw, spec.expectations, raw_of, keys)
    with phases.phase("split_and_versions"):
        content_hashes(raw, raw_of, keys)
    with phases.phase("parquet_write"):
        (folder / "raw").mkdir(parents=True)
        for key in keys:
            raw_days[key].reset_index(drop=True).to_parquet(folder / "raw" / f"{key}.parquet", index=False)
    with phases.phase("features"):
        features, _ = build_features(raw, spec)
    with phases.phase("split_and_versions"):
        features_of, features_days = by_day(features)
        content_hashes(features, features_of, keys)
    with phases.phase("parquet_write"):
        (folder / "features").mkdir(parents=True)
        for key in keys:
            part = features_days[key].reset_index(drop=True)
            part = part.assign(**{n: part[n].cat.remove_unused_categories() for n in spec.features.all_categorical})
            part.to_parquet(folder / "features" / f"{key}.parquet", index=False)
    if not report.passed:
        raise SystemExit(f"the pinned year fails its own expectations: {report.failures[:3]}")
    return phases.rounded()


def add_phase(phases: dict, name: str, seconds: dict) -> None:
    """Adds `{"s": ..., "cpu_s": ...}` to the phase `name`."""
    total = phases.setdefault(name, {"s": 0.0, "cpu_s": 0.0})
    for kind in ("s", "cpu_s"):
        total[kind] = round(total[kind] + seconds[kind], 3)


def run_phases(result, reads: dict, run_time: dict) -> dict:
    """The run's phases from its events: each asset's `phase_seconds` and `write_seconds` metadata (on its
    newest partition), the IO manager's reads timed by the benchmark, and `dagster`: the rest of the run."""
    phases: dict = {}
    newest: dict = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        if key not in newest or event.partition > newest[key].partition:
            newest[key] = event
    for event in newest.values():
        metadata = event.step_materialization_data.materialization.metadata
        for name, seconds in metadata["phase_seconds"].value.items():
            add_phase(phases, name, seconds)
        add_phase(phases, "parquet_write", metadata["write_seconds"].value)
    add_phase(phases, "parquet_read", reads)
    phases["dagster"] = {kind: round(run_time[kind] - sum(p[kind] for p in phases.values()), 3) for kind in run_time}
    return phases


def main() -> int:
    parser = argparse.ArgumentParser()
    quick_option(parser, f"the first {QUICK_DAYS} days of the year instead of {DAYS}")
    args = parser.parse_args()
    days = QUICK_DAYS if args.quick else DAYS

    with tempfile.TemporaryDirectory(prefix="ml_platform_backfill_") as scratch_dir:
        scratch = Path(scratch_dir)
        os.environ["ML_PLATFORM_HOME"] = str(scratch / "home")
        setup = Clock()
        import dagster as dg
        import pandas as pd
        import pyarrow.parquet  # noqa: F401  (imported by the first Parquet write otherwise: the peer's, not the run's)
        import yaml

        from ml_platform.core.sources import nycflights13
        from ml_platform.defs import build_definitions
        from ml_platform.defs.io_manager import PartitionedParquetIOManager
        from ml_platform.spec import BUNDLED_SPECS, load_spec

        data = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
        data["source"]["offset_weeks"] = REPLAY_OFFSET_WEEKS
        spec_path = scratch / "flight_delay.yaml"
        spec_path.write_text(yaml.safe_dump(data))
        spec = load_spec(spec_path)
        defs = build_definitions([spec])
        replay = nycflights13.Replay(offset_days=7 * REPLAY_OFFSET_WEEKS)
        partitions_def = defs.resolve_assets_def(dg.AssetKey(["flight_delay", "raw"])).partitions_def
        assert partitions_def is not None, "raw is partitioned by day"
        keys = partitions_def.get_partition_keys()
        keys = keys[:days]
        emit(step="setup", partitions=len(keys), first=keys[0], last=keys[-1], **setup.stop())

        nycflights13.source_table.cache_clear()
        plain_clock = Clock()
        plain = plain_backfill(spec, replay, date.fromisoformat(keys[0]), days, scratch / "plain")
        plain_time = plain_clock.stop()
        emit(step="plain", phases=plain, **plain_time)

        dagster_home = scratch / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        job = defs.resolve_job_def("flight_delay_data")
        reads = {"s": 0.0, "cpu_s": 0.0}
        load_input = PartitionedParquetIOManager.load_input

        def timed_load_input(self, context):
            clock = Clock()
            try:
                return load_input(self, context)
            finally:
                add_phase({"parquet_read": reads}, "parquet_read", clock.stop())

        # timing the reads means wrapping the method for this run only; it is put back right after
        PartitionedParquetIOManager.load_input = timed_load_input  # type: ignore[method-assign]  # timing wrapper
        nycflights13.source_table.cache_clear()
        run_clock = Clock()
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
            raise_on_error=False,
        )
        run_time = run_clock.stop()
        PartitionedParquetIOManager.load_input = load_input  # type: ignore[method-assign]  # restore the original

        materialized: dict[str, set] = {}
        for event in result.get_asset_materialization_events():
            assert event.asset_key is not None, "a materialization always names its asset"
            materialized.setdefault(event.asset_key.to_user_string(), set()).add(event.partition)
        storage = scratch / "home" / "storage" / "flight_delay"
        files = {stage: len(list((storage / stage).glob("*.parquet"))) for stage in ("raw", "features")}
        complete = bool(
            result.success and len(materialized) == 2 and all(len(v) == len(keys) for v in materialized.values())
        )
        phases = run_phases(result, reads, run_time) if complete else {}
        same = complete and all(
            pd.read_parquet(storage / stage / f"{key}.parquet").equals(
                pd.read_parquet(scratch / "plain" / stage / f"{key}.parquet")
            )
            for stage in ("raw", "features")
            for key in keys[:: max(1, len(keys) // SAME_DATA_CHECKED)]
        )
        emit(
            step="run",
            success=result.success,
            runs=len(instance.get_runs()),
            materialized={k: len(v) for k, v in materialized.items()},
            stored_files=files,
            same_data_as_plain=same,
            phases=phases,
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            **run_time,
        )
        instance.dispose()
        ok = complete and same
        figure(
            "backfill_365_days_s",
            value=run_time["s"],
            unit="s",
            peer=f"the same {len(keys)} days through the core functions in one loop, no Dagster",
            peer_value=plain_time["s"],
            better="lower",
            goal=GOAL_S,
            met=ok and run_time["s"] <= GOAL_S,
            days=len(keys),
            complete=ok,
            cpu_s=run_time["cpu_s"],
            peer_cpu_s=plain_time["cpu_s"],
        )
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
