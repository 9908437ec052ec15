"""Backfill a whole replayed year of `flight_delay/raw` and `flight_delay/features` in one run.

Fresh temporary ML_PLATFORM_HOME and Dagster instance, the real nycflights13 data, the bundled spec with the
replay offset pinned so that all 365 days lie in the past. Prints JSON lines; the last one is the figure:
{"figure": "backfill_365_days_s", "value": ..., "goal": 60, "met": ...}

    python benchmarks/backfill.py
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

GOAL_S = 60


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ml_platform_backfill_") as scratch:
        scratch = Path(scratch)
        os.environ["ML_PLATFORM_HOME"] = str(scratch / "home")
        started = time.perf_counter()
        import dagster as dg
        import yaml

        from ml_platform.core.sources import nycflights13
        from ml_platform.defs import build_definitions
        from ml_platform.spec import BUNDLED_SPECS, load_spec

        # Pin the replay so that the year's last day is already in the past: all 365 partitions exist.
        weeks = nycflights13.offset_weeks_for(date.today()) - 1
        data = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
        data["source"]["offset_weeks"] = weeks
        spec_path = scratch / "flight_delay.yaml"
        spec_path.write_text(yaml.safe_dump(data))
        spec = load_spec(spec_path)
        defs = build_definitions([spec])
        imported = time.perf_counter()

        partitions = defs.resolve_assets_def(dg.AssetKey(["flight_delay", "raw"])).partitions_def
        keys = partitions.get_partition_keys()
        emit(
            step="setup",
            partitions=len(keys),
            first=keys[0],
            last=keys[-1],
            offset_weeks=weeks,
            import_and_load_s=round(imported - started, 2),
        )

        dagster_home = scratch / "dagster_home"
        dagster_home.mkdir()
        instance = dg.DagsterInstance.local_temp(str(dagster_home))
        job = defs.resolve_job_def("flight_delay_data")
        run_started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
            raise_on_error=False,
        )
        run_s = time.perf_counter() - run_started
        materialized = {}
        for event in result.get_asset_materialization_events():
            materialized.setdefault(event.asset_key.to_user_string(), set()).add(event.partition)
        storage = scratch / "home" / "storage" / "flight_delay"
        files = {stage: len(list((storage / stage).glob("*.parquet"))) for stage in ("raw", "features")}
        steps = {
            e.step_key: round(e.event_specific_data.duration_ms / 1000, 2)
            for e in result.all_events
            if e.event_type_value == "STEP_SUCCESS"
        }
        emit(
            step="run",
            success=result.success,
            runs=len(instance.get_runs()),
            materialized={k: len(v) for k, v in materialized.items()},
            stored_files=files,
            step_s=steps,
            run_s=round(run_s, 2),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        )
        ok = (
            result.success
            and len(keys) == 365
            and all(len(v) == 365 for v in materialized.values())
            and len(materialized) == 2
        )
        total = time.perf_counter() - started
        emit(
            figure="backfill_365_days_s",
            value=round(total, 2),
            goal=GOAL_S,
            met=bool(ok and total <= GOAL_S),
            run_only_s=round(run_s, 2),
            complete=ok,
        )
        instance.dispose()
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
