"""The retrain cursor without any orchestrator: which new drift/performance evaluations fail, how far the
cursor moves past evaluations still running or never evaluated, and the cooldown."""

from __future__ import annotations

import json

import pytest

from ml_platform.core.retraining import CheckRecord, RetrainCursor, RetrainOutcome, RetrainStatus, UnchangedVersion


def _ids(failing) -> list[tuple[str, int]]:
    return [(reason, record.id) for reason, record in failing]


def test_an_empty_cursor_reads_as_nothing_seen_and_never_retrained():
    for text in (None, ""):
        cursor = RetrainCursor.from_json(text)
        assert cursor.last_id == {} and cursor.last_retrain == 0.0 and cursor.since("drift") == 0
    assert json.loads(RetrainCursor().to_json()) == {"last_id": {}}


def test_a_stored_cursor_keeps_its_shape():
    text = json.dumps({"last_id": {"drift": 7, "performance": 3}, "last_retrain": 1700000000.5})
    cursor = RetrainCursor.from_json(text)
    assert cursor == RetrainCursor({"drift": 7, "performance": 3}, 1700000000.5)
    assert json.loads(cursor.to_json()) == json.loads(text)


def test_failures_come_back_oldest_first_and_a_later_pass_does_not_hide_them():
    cursor = RetrainCursor()
    failing = cursor.advance(
        {
            "drift": [CheckRecord(4, "SUCCEEDED"), CheckRecord(2, "FAILED"), CheckRecord(3, "FAILED")],
            "performance": [CheckRecord(5, "FAILED")],
        }
    )
    assert _ids(failing) == [("drift", 2), ("drift", 3), ("performance", 5)]
    assert cursor.last_id == {"drift": 4, "performance": 5}
    assert cursor.advance({"drift": [CheckRecord(3, "FAILED"), CheckRecord(4, "SUCCEEDED")]}) == []


def test_an_evaluation_still_running_is_looked_at_again_and_one_never_evaluated_is_passed_over():
    cursor = RetrainCursor({"drift": 1})
    running = [CheckRecord(2, "PLANNED", run_finished=False), CheckRecord(3, "FAILED")]
    assert cursor.advance({"drift": running, "performance": [CheckRecord(9, "FAILED")]}) == [
        ("performance", CheckRecord(9, "FAILED"))
    ]
    assert cursor.last_id == {"drift": 1, "performance": 9}  # drift waits at the running evaluation

    died = [CheckRecord(2, "PLANNED", run_finished=True), CheckRecord(3, "FAILED")]
    assert _ids(cursor.advance({"drift": died})) == [("drift", 3)]
    assert cursor.since("drift") == 3


def test_the_caller_gets_its_own_record_back():
    original = object()
    ((_, record),) = RetrainCursor().advance({"drift": [CheckRecord(1, "FAILED", source=original)]})
    assert record.source is original


@pytest.mark.parametrize("last_retrain, now, due", [(0.0, 1.7e9, True), (100.0, 150.0, False), (100.0, 160.0, True)])
def test_a_retrain_is_due_once_the_cooldown_is_over(last_retrain, now, due):
    """Never retrained: the cooldown runs from the epoch, so the first failure retrains."""
    assert RetrainCursor(last_retrain=last_retrain).due(now, cooldown_s=60) is due


def test_a_retrain_restarts_the_cooldown_and_is_stored():
    cursor = RetrainCursor({"drift": 2})
    cursor.retrained(500.0)
    assert not cursor.due(530.0, 60) and cursor.due(560.0, 60)
    assert json.loads(cursor.to_json()) == {"last_id": {"drift": 2}, "last_retrain": 500.0}


def test_a_requested_retrain_that_was_a_no_op_gives_the_cooldown_back():
    cursor = RetrainCursor(last_retrain=100.0)
    cursor.retrained(500.0, request="drift-7")
    assert json.loads(cursor.to_json())["pending"] == {"request": "drift-7", "before": 100.0}
    restored = RetrainCursor.from_json(cursor.to_json())
    assert restored == cursor
    assert restored.settle(RetrainStatus.RUNNING) is False and not restored.due(
        530.0, 60
    )  # the cooldown holds meanwhile
    assert restored.settle(RetrainStatus.NOOP) is True
    assert restored.pending is None and restored.last_retrain == 100.0 and restored.due(530.0, 60)
    assert "pending" not in json.loads(restored.to_json())


def test_a_requested_retrain_that_trained_or_failed_keeps_the_cooldown():
    cursor = RetrainCursor(last_retrain=100.0)
    cursor.retrained(500.0, request="performance-3")
    assert cursor.settle(RetrainStatus.RETRAINED) is True
    assert cursor.last_retrain == 500.0 and cursor.pending is None and not cursor.due(530.0, 60)
    assert cursor.settle(RetrainStatus.NOOP) is False and cursor.last_retrain == 500.0  # nothing pending any more


# --- no-op retrains over a real MLflow registry --------------------------------------------------------------


def _register(client, experiment, spec, model, tags: dict) -> str:
    import mlflow

    from ml_platform.core.registry import Registry
    from ml_platform.core.training_run import log_model_files

    with mlflow.start_run(experiment_id=experiment) as run:
        model_uri, _ = log_model_files(model)
    return Registry(client, spec.name).register(model_uri, run.info.run_id, tags=tags)


def test_retrain_inputs_change_with_any_day_of_data_and_with_the_spec(spec, training_set):
    from ml_platform.core.retraining import retrain_inputs

    inputs = retrain_inputs(spec, training_set)
    assert inputs == retrain_inputs(spec, training_set.copy()) and inputs.days == 56
    assert set(inputs.tags()) == {"data_versions_digest", "spec_digest", "training_code_version"}
    edited = training_set.copy()
    edited.loc[edited.index[-1], "temp"] = edited["temp"].iloc[-1] + 1.0  # one row of the newest day
    assert retrain_inputs(spec, edited).data_versions_digest != inputs.data_versions_digest
    respecified = spec.model_copy(update={"training": spec.training.model_copy(update={"early_stopping_rounds": 7})})
    assert retrain_inputs(respecified, training_set).spec_digest != inputs.spec_digest
    assert retrain_inputs(respecified, training_set).data_versions_digest == inputs.data_versions_digest


def test_only_the_newest_version_with_the_same_recorded_inputs_is_unchanged(spec, model, store, training_set):
    from ml_platform.core.retraining import retrain_inputs, unchanged_version

    client, experiment = store
    inputs = retrain_inputs(spec, training_set)
    assert unchanged_version(client, spec.name, inputs) is None  # nothing registered yet

    _register(client, experiment, spec, model, {"partition": "w1"})  # registered before inputs were recorded
    assert unchanged_version(client, spec.name, inputs) is None
    version = _register(client, experiment, spec, model, {"partition": "w1", "model_sha256": "abc", **inputs.tags()})
    found = unchanged_version(client, spec.name, inputs)
    assert found is not None and found.version == version == "2"
    assert found.run_id == client.get_model_version(spec.name, "2").run_id and found.tags["model_sha256"] == "abc"
    assert found.reason.startswith("no-op retrain") and "v2" in found.reason and "56 days" in found.reason

    _register(client, experiment, spec, model, {**inputs.tags(), "data_versions_digest": "other weeks"})
    assert unchanged_version(client, spec.name, inputs) is None  # v2 matches, but v3 is the newest


# --- a retrain's outcome, in the forms stored and shown ------------------------------------------------------


def _unchanged(spec) -> RetrainOutcome:
    tags = {
        "model_sha256": "abc",
        "best_iteration": "41",
        "data_versions_digest": "days",
        "training_code_version": "code",
        f"valid_{spec.gate_metric}": "0.71",
        "dagster_run_id": "run-that-registered",
    }
    existing = UnchangedVersion("3", "r3", "models:/m/3", tags, "no-op retrain: the inputs equal v3's")
    return RetrainOutcome.unchanged(spec, "2013-12-23", existing, "7", {})


def test_an_unchanged_version_reads_back_from_its_stored_row_and_says_so_in_its_metadata(spec):
    import pandas as pd

    outcome = _unchanged(spec)
    stored = pd.DataFrame([outcome.row()]).iloc[0].to_dict()  # numpy values, as a table read back gives them
    again = RetrainOutcome.from_stored(stored)
    assert again.row() == outcome.row() and again.noop and again.best_iteration == 41
    metadata = outcome.to_metadata({"mlflow_tracking_uri": "file:///mlruns"})
    assert list(metadata)[:5] == ["registered_version", "noop", "noop_reason", "mlflow_run_id", "mlflow_tracking_uri"]
    assert metadata["noop"] is True and metadata[f"valid_{spec.gate_metric}"] == 0.71
    assert metadata["registered_by_dagster_run"] == "run-that-registered" and "timings" not in metadata
    assert RetrainOutcome.reported_noop(metadata)


def test_rows_and_metadata_written_before_no_op_retrains_read_as_trained(spec):
    """Older runs stored the model row without `noop`/`noop_reason`, and metadata without `noop`."""
    row = {k: v for k, v in _unchanged(spec).row().items() if not k.startswith("noop")}
    older = RetrainOutcome.from_stored(row)
    assert not older.noop and older.noop_reason == "" and older.version == "3"
    assert not RetrainOutcome.reported_noop({"registered_version": "3"})
    assert not RetrainOutcome.reported_noop({"registered_version": "3", "noop": False})
