"""No-op retrains on a real Dagster instance and a real MLflow registry: retraining a week whose data, spec and
training code are unchanged trains nothing and registers no copy; it reports the newest version with the
reason, and evaluation and champion leave that version's decision alone. Changed data retrains as before."""

from __future__ import annotations

import pandas as pd

from ml_platform.core.registry import Registry
from ml_platform_tests.defs.helpers import _aliases, _client, _day, _metadata, _partitions, _retrain, _versions


def _model_event(result):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "model"]
    return event.step_materialization_data.materialization


def test_retraining_an_unchanged_week_reports_the_existing_version(platform, instance):
    make, home = platform
    defs = make()
    partition = _partitions(defs)[1]
    first = _retrain(defs, instance, partition)
    assert first.success
    registered = _metadata(first, "model")
    assert registered["registered_version"] == "1" and registered["noop"] is False
    history = Registry(_client(home), "flight_delay").history()
    recorded = _client(home).get_run(registered["mlflow_run_id"]).data

    again = _retrain(defs, instance, partition)
    assert again.success
    model = _metadata(again, "model")
    assert model["noop"] is True and model["registered_version"] == "1"
    assert model["noop_reason"].startswith("no-op retrain") and "v1" in model["noop_reason"]
    assert model["mlflow_run_id"] == registered["mlflow_run_id"]
    assert model["model_sha256"] == registered["model_sha256"] and model["train_seconds"] == 0.0
    assert model["data_versions_digest"] == registered["data_versions_digest"]
    assert model["registered_by_dagster_run"] == first.run_id
    assert _versions(home) == ["1"]
    # Dagster sees the same model: the same data version as the materialization that registered it.
    assert (
        _model_event(again).tags["dagster/data_version"]
        == _model_event(first).tags["dagster/data_version"]
        == f"v1-{registered['model_sha256'][:16]}"
    )
    # The stored row downstream stages read says the same.
    (row,) = pd.read_parquet(home / "storage" / "flight_delay" / "model" / f"{partition}.parquet").to_dict("records")
    assert row["version"] == "1" and bool(row["noop"]) and row["noop_reason"] == model["noop_reason"]

    # The version's own evaluation record stays as it was: same tags (its Dagster run), same metrics.
    evaluation = _metadata(again, "evaluation")
    assert evaluation["mlflow_record"].startswith("kept: v1 was evaluated when it was registered")
    kept = _client(home).get_run(registered["mlflow_run_id"]).data
    assert kept.tags == recorded.tags and kept.metrics == recorded.metrics
    assert kept.tags["dagster_run_id"] == first.run_id

    # The champion is not promoted or audited again.
    champion = _metadata(again, "champion")
    assert champion["action"] == "unchanged" and "already holds champion" in champion["reason"]
    assert _aliases(home) == {"champion": "1"}
    assert Registry(_client(home), "flight_delay").history() == history


def test_a_no_op_retrain_does_not_reopen_a_decision(platform, instance):
    """A version held for approval stays held, with one audit record, however often its week is retrained."""
    make, home = platform
    defs = make({"gates.require_approval": True})
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    registry = Registry(_client(home), "flight_delay")
    assert [r["action"] for r in registry.history()] == ["awaiting-approval"]

    again = _retrain(defs, instance, partition)
    assert again.success and _metadata(again, "model")["noop"] is True
    champion = _metadata(again, "champion")
    assert champion["action"] == "unchanged" and "awaiting-approval" in champion["reason"]
    assert [r["action"] for r in registry.history()] == ["awaiting-approval"]
    assert _versions(home) == ["1"] and _aliases(home) == {"challenger": "1"}


def test_changed_data_or_a_changed_spec_retrains(platform, instance):
    make, home = platform
    defs = make()
    partition = _partitions(defs)[1]
    assert _retrain(defs, instance, partition).success

    # One feature day of the window rewritten (a late correction): its data version changes.
    day = home / "storage" / "flight_delay" / "features" / f"{_day(partition, -3)}.parquet"
    frame = pd.read_parquet(day)
    frame.loc[frame.index[:50], "temp"] = frame["temp"].iloc[:50] + 10
    frame.to_parquet(day, index=False)
    changed = _retrain(defs, instance, partition)
    assert changed.success
    model = _metadata(changed, "model")
    assert model["noop"] is False and model["registered_version"] == "2"

    # A spec change with the same data is a reason to retrain too.
    respecified = make(
        {"training.params": {"learning_rate": 0.07, "num_leaves": 63, "min_data_in_leaf": 50, "feature_fraction": 0.8}}
    )
    other = _metadata(_retrain(respecified, instance, partition), "model")
    assert other["noop"] is False and other["registered_version"] == "3"
    assert _versions(home) == ["1", "2", "3"]


def test_a_version_without_recorded_inputs_is_retrained_byte_for_byte(platform, instance):
    """A version registered before inputs were recorded never matches: the week is trained again, and the same
    rows and spec give the same bytes."""
    make, home = platform
    defs = make()
    partition = _partitions(defs)[1]
    first = _metadata(_retrain(defs, instance, partition), "model")
    _client(home).delete_model_version_tag("flight_delay", "1", "training_code_version")
    second = _metadata(_retrain(defs, instance, partition), "model")
    assert second["noop"] is False and second["registered_version"] == "2"
    assert first["model_sha256"] == second["model_sha256"]
