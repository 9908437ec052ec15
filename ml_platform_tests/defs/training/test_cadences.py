"""Data cadences through the training layer, end to end on a real Dagster instance and MLflow store: hourly data
partitions retrained daily, weekly data partitions retrained weekly (raw → features → training_set → model →
evaluation → champion). The cadences the training layer cannot cut windows from are refused by the spec check
(ml_platform_tests/spec/test_rules.py).
"""

from __future__ import annotations

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from ml_platform.core.model import Model
from ml_platform.spec import SpecError, load_spec
from ml_platform_tests.defs.helpers import _client

MODEL = "cadence_demo"


def _events(path, start: str, end: str) -> None:
    """A dozen events an hour, every hour of [start, end): a binary label driven by `x` and `group`."""
    rng = np.random.default_rng(0)
    hours = pd.date_range(start, end, freq="h", inclusive="left")
    stamps = np.repeat(hours, 12) + pd.to_timedelta(rng.integers(0, 3600, len(hours) * 12), unit="s")
    x, group = rng.normal(size=len(stamps)), rng.choice(["a", "b", "c"], len(stamps))
    label = (x + (group == "a") + rng.normal(scale=0.7, size=len(stamps)) > 0.5).astype(int)
    pd.DataFrame({"event_time": stamps, "x": x, "group": group, "label": label}).to_csv(path, index=False)


def _spec(folder, cadence: str, end: str, training: dict):
    _events(folder / "events.csv", "2024-01-01", end)
    (folder / f"{MODEL}.yaml").write_text(
        yaml.safe_dump(
            {
                "name": MODEL,
                "description": "Cadence demo",
                "owner": "team:ml",
                "task": "binary",
                "timestamp": "event_time",
                "source": {"kind": "files", "path": str(folder / "events.csv")},
                "partitions": {"cadence": cadence, "start": "2024-01-01", "end": end},
                "target": {"column": "label"},
                "features": {"numeric": ["x"], "categorical": ["group"]},
                "training": {"num_boost_round": 30, "early_stopping_rounds": 5, **training},
                "gates": {"metric": "roc_auc", "min": 0.6},
            }
        )
    )
    return load_spec(folder / f"{MODEL}.yaml")


def _training_layer(spec) -> dg.Definitions:
    """The model's whole graph as `dagster dev` loads it (data schedule, sensors and all)."""
    from ml_platform.defs import build_definitions

    return build_definitions([spec])


def _metadata(result, stage: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == stage]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


CASES = {
    # 3-day windows of 72 hourly partitions, one retraining partition a day
    "hourly_data_daily_retraining": (
        "hourly",
        "2024-01-04",
        {"cadence": "daily", "window_days": 3, "validation_days": 1, "test_days": 1},
        ("2024-01-01-00:00", "2024-01-01-01:00", "2024-01-03"),
        72,
    ),
    # 2-week windows of 2 weekly partitions, one retraining partition a week
    "weekly_data_weekly_retraining": (
        "weekly",
        "2024-01-22",
        {"cadence": "weekly", "window_days": 14, "validation_days": 2, "test_days": 2},
        ("2024-01-01", "2024-01-08", "2024-01-14"),
        2,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_cadence_trains_end_to_end(case, home, instance, tmp_path, monkeypatch):
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)
    cadence, end, training, (first_key, second_key, last_day), partitions = CASES[case]
    spec = _spec(tmp_path, cadence, end, training)
    defs = _training_layer(spec)
    data_keys = defs.resolve_assets_def(dg.AssetKey([MODEL, "raw"])).partitions_def.get_partition_keys()
    assert data_keys[:2] == [first_key, second_key]
    data = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey([MODEL, "raw"]), dg.AssetKey([MODEL, "features"])],
        tags={"dagster/asset_partition_range_start": data_keys[0], "dagster/asset_partition_range_end": data_keys[-1]},
    )
    assert data.success

    week = defs.resolve_assets_def(dg.AssetKey([MODEL, "model"])).partitions_def.get_partition_keys()[0]
    result = defs.resolve_job_def(f"{MODEL}_retrain").execute_in_process(instance=instance, partition_key=week)
    assert result.success
    training_set = _metadata(result, "training_set")
    versions = training_set["upstream_data_versions"]
    assert training_set["upstream_partitions"] == len(versions) == partitions
    assert next(iter(versions)) == first_key and training_set["splits"]["test"]["last_day"] == last_day
    model = _metadata(result, "model")
    assert model["registered_version"] == "1"
    assert _metadata(result, "evaluation")["test_roc_auc"] > 0.8
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "metric_floor": True,
        "not_worse_than_champion": True,
        "fairness_gap": True,
        "prediction_sanity": True,
    }
    assert _metadata(result, "champion")["action"] == "promote"

    _client(home)  # the test home's MLflow store
    manifest = Model.load(
        mlflow.artifacts.download_artifacts(run_id=model["mlflow_run_id"], artifact_path="model_files")
    ).manifest
    splits = training_set["splits"]
    assert manifest["target"] == "label"  # target.name defaults to the column
    assert manifest["fit"]["refit"] is True
    assert manifest["fit"]["rows"] == splits["train"]["rows"] + splits["valid"]["rows"]
    assert manifest["fit"]["last_day"] == splits["valid"]["last_day"] < splits["test"]["first_day"]


def test_hourly_data_maps_each_retraining_partition_onto_its_hours(home, tmp_path):
    """Dagster offsets count downstream periods: a weekly 14-day window is 336 hourly keys, ending with the week."""
    spec = _spec(
        tmp_path, "hourly", "2024-02-01", {"cadence": "weekly", "window_days": 14, "validation_days": 2, "test_days": 2}
    )
    defs = _training_layer(spec)
    training_set = defs.resolve_assets_def(dg.AssetKey([MODEL, "training_set"]))
    features = defs.resolve_assets_def(dg.AssetKey([MODEL, "features"])).partitions_def
    weeks = training_set.partitions_def.get_partition_keys()
    assert weeks[:2] == ["2024-01-08", "2024-01-15"]
    mapping = training_set.get_partition_mapping(dg.AssetKey([MODEL, "features"]))
    mapped = mapping.get_upstream_mapped_partitions_result_for_partitions(
        training_set.partitions_def.subset_with_partition_keys([weeks[1]]), training_set.partitions_def, features
    )
    keys = sorted(mapped.partitions_subset.get_partition_keys())
    assert len(keys) == 14 * 24 and keys[0] == "2024-01-08-00:00" and keys[-1] == "2024-01-21-23:00"


def test_a_replay_pinned_at_first_use_is_checked_when_the_definitions_are_built(home, tmp_path, write_spec):
    """The spec alone does not know an unpinned replay's first day; the definitions refuse the window then,
    naming the same fields as `ml-platform check` does for dates it knows."""
    import json
    from datetime import date, timedelta

    from ml_platform.defs import build_definitions

    first = date(2013, 1, 1) + timedelta(weeks=600)
    pin = home / "replay" / "flight_delay.json"
    pin.parent.mkdir(parents=True)
    pin.write_text(json.dumps({"offset_days": 7 * 600, "pinned_on": "2024-01-01"}))
    end = first + timedelta(days=50)
    spec = load_spec(write_spec(tmp_path, {"partitions.end": end.isoformat()}))
    with pytest.raises(SpecError) as caught:
        build_definitions([spec])
    message = str(caught.value)
    assert str(spec.path) in message and "training.window_days: found 56" in message
    assert f"the 50 days of data from {first} to {end - timedelta(days=1)}" in message
    assert f"set partitions.end to {first + timedelta(days=56)} or later" in message
