"""Evaluating a trained version without an orchestrator: holdout metrics, gates, model card, and what later
stages need recorded on its run."""

from __future__ import annotations

import json

import mlflow

from ml_platform.core.evaluation_run import CONFUSION_MATRIX, evaluate_version, log_evaluation
from ml_platform.core.mlflow_store import GATE_RESULTS, MODEL_CARD, MODEL_FILES, REFERENCE_PROFILE, SMOKE_ROWS
from ml_platform.core.registry import Registry
from ml_platform.core.retraining import RetrainOutcome


def test_an_evaluation_gates_the_version_and_records_it_on_its_run(spec, store, logged_version, training_set):
    client, _ = store
    frame = training_set
    version, run_id = logged_version()
    registry = Registry(client, spec.name)
    record, candidate = evaluate_version(spec, version, frame, registry)
    assert record.champion_version is None and record.result.value > 0.6 and record.passed
    assert "# Model card: flight_delay v1" in record.card
    assert f"MLflow run `{run_id}`" in record.card and "window " in record.card  # its trace section
    with mlflow.start_run(run_id=run_id):
        log_evaluation(record, candidate)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {
        MODEL_FILES,
        SMOKE_ROWS,
        REFERENCE_PROFILE,
        GATE_RESULTS,
        MODEL_CARD,
        CONFUSION_MATRIX,
        "plots",
    } <= artifacts
    assert "confusion_matrix" in record.result.plots and "## Confusion matrix (held-out slice)" in record.card
    assert client.get_run(run_id).data.tags["gate.metric_floor"] == "passed"
    outcome = RetrainOutcome(spec.name, version, run_id, "0", "models:/m/1", "2013-06-18", spec.digest, 30, "0" * 64)
    row = record.row(outcome)
    assert (
        row["version"] == version
        and row["all_gates_passed"]
        and next(g["name"] for g in json.loads(row["gates"])) == "metric_floor"
    )


def test_a_second_version_is_compared_with_the_champion_on_the_same_rows(spec, store, logged_version, training_set):
    client, _ = store
    frame = training_set
    first, _ = logged_version()
    Registry(client, spec.name).promote(first, "test", {})
    second, _ = logged_version()
    record, _ = evaluate_version(spec, second, frame, Registry(client, spec.name))
    # the same model under two versions: the champion scores exactly what the candidate scores
    assert record.champion_version == first and record.result.champion[record.result.metric] == record.result.value
