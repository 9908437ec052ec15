"""Retraining `flight_delay` through the platform against a plain LightGBM script, in one run.

(a) holdout ROC AUC of the platform's model against a plain script trained on the same window, split and
    parameters (goal: no worse than 0.005 below);
(b) wall time of one retraining through Dagster (training_set → model → evaluation → champion for one
    partition, in process, with MLflow logging, registry, plots and model card) against the plain script
    (read the window's feature files, train, score the holdout), as a ratio (goal: at most 2x).
Both are timed warm (imports done, one untimed run first), alternating, median of several repeats.

    python benchmarks/training.py [--repeats 3]

Prints JSON lines; the last is {"figure": "retrain_overhead_ratio", "value": ..., "goal": 2.0, "met": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def plain_script(storage: Path, days: list[str], spec) -> float:
    """What a data scientist would write by hand: pandas categoricals, LightGBM, the same split and params."""
    import lightgbm as lgb
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    frame = pd.concat([pd.read_parquet(storage / f"{day}.parquet") for day in days], ignore_index=True)
    day = frame["scheduled_departure"].dt.normalize()
    unique = sorted(day.unique())
    test_start = unique[-spec.training.test_days]
    valid_start = unique[-(spec.training.test_days + spec.training.validation_days)]
    features = spec.features.names
    categorical = spec.features.all_categorical
    for column in categorical:
        frame[column] = frame[column].astype("category")
    train, valid, test = frame[day < valid_start], frame[(day >= valid_start) & (day < test_start)], frame[day >= test_start]
    params = {"objective": "binary", "metric": ["auc", "binary_logloss"], "seed": spec.training.seed,
              "verbosity": -1, "num_threads": 2, **spec.training.params}
    booster = lgb.train(params, lgb.Dataset(train[features], train["delayed"], categorical_feature=categorical),
                        num_boost_round=spec.training.num_boost_round,
                        valid_sets=[lgb.Dataset(valid[features], valid["delayed"], categorical_feature=categorical)],
                        callbacks=[lgb.early_stopping(spec.training.early_stopping_rounds, verbose=False)])
    return float(roc_auc_score(test["delayed"], booster.predict(test[features])))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml_platform_training_") as scratch:
        scratch = Path(scratch)
        os.environ["ML_PLATFORM_HOME"] = str(scratch / "home")
        import dagster as dg
        import yaml

        from ml_platform.core.sources import nycflights13
        from ml_platform.defs import build_definitions
        from ml_platform.spec import BUNDLED_SPECS, load_spec

        weeks = nycflights13.offset_weeks_for(date.today()) - 1
        data = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
        data["source"]["offset_weeks"] = weeks
        (scratch / "flight_delay.yaml").write_text(yaml.safe_dump(data))
        spec = load_spec(scratch / "flight_delay.yaml")
        defs = build_definitions([spec])
        partitions = defs.resolve_assets_def(dg.AssetKey(["flight_delay", "model"])).partitions_def
        partition = partitions.get_partition_keys()[20]  # a late-spring week of the replayed year
        first_day = date.fromisoformat(partition) + timedelta(days=7 - spec.training.window_days)
        days = [(first_day + timedelta(days=i)).isoformat() for i in range(spec.training.window_days)]

        (scratch / "dagster").mkdir()
        instance = dg.DagsterInstance.local_temp(str(scratch / "dagster"))
        data_run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["flight_delay", "raw"]),
                                                dg.AssetKey(["flight_delay", "features"])],
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
        assert data_run.success
        emit(step="setup", partition=partition, window=f"{days[0]} → {days[-1]}", offset_weeks=weeks)

        retrain = defs.resolve_job_def("flight_delay_retrain")
        storage = scratch / "home" / "storage" / "flight_delay" / "features"

        def platform_run() -> dict:
            result = retrain.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)
            metadata = {}
            for event in result.get_asset_materialization_events():
                metadata.update({f"{event.asset_key.path[-1]}.{k}": v.value
                                 for k, v in event.materialization.metadata.items()})
            steps = {e.step_key.split("__")[-1]: round(e.event_specific_data.duration_ms / 1000, 3)
                     for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
            return {"success": result.success, "auc": metadata.get("evaluation.test_roc_auc"), "steps": steps,
                    "gates": {e.check_name: e.passed for e in result.get_asset_check_evaluations()}}

        platform_run()  # warm: imports, MLflow store migrations, first registered model
        plain_script(storage, days, spec)
        platform_times, plain_times, runs = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            runs.append(platform_run())
            platform_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            plain_auc = plain_script(storage, days, spec)
            plain_times.append(time.perf_counter() - started)
        platform_auc = runs[-1]["auc"]
        emit(step="platform", auc=platform_auc, seconds=[round(t, 3) for t in platform_times],
             steps=runs[-1]["steps"], gates=runs[-1]["gates"], success=all(r["success"] or r["gates"] for r in runs))
        emit(step="plain_script", auc=plain_auc, seconds=[round(t, 3) for t in plain_times])
        auc_gap = plain_auc - platform_auc
        emit(figure="holdout_auc_gap_vs_plain", value=round(auc_gap, 5), platform=round(platform_auc, 5),
             plain=round(plain_auc, 5), goal=0.005, met=bool(auc_gap <= 0.005))
        ratio = statistics.median(platform_times) / statistics.median(plain_times)
        emit(figure="retrain_overhead_ratio", value=round(ratio, 2), goal=2.0, met=bool(ratio <= 2.0),
             platform_s=round(statistics.median(platform_times), 3), plain_s=round(statistics.median(plain_times), 3))
        instance.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
