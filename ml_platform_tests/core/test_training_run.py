"""A retraining partition's ML work without Dagster: the training set, training with MLflow logging and
registration, evaluation with gates and model card, and the champion decision, on real days and a real
local MLflow store."""

from __future__ import annotations

import json

import mlflow
import pytest

from ml_platform.core.data_versions import content_hash, versions_by_day
from ml_platform.core.evaluation_run import evaluate_version, log_evaluation
from ml_platform.core.mlflow_store import GATE_RESULTS, MODEL_FILES, REFERENCE_PROFILE, SMOKE_ROWS, load_model, use_store
from ml_platform.core.promotion import decide_promotion
from ml_platform.core.registry import Registry
from ml_platform.core.training_run import SPLIT, TrainingError, build_training_set, split_of, train_and_log

DAYS = [f"2013-05-{d:02d}" for d in range(1, 32)] + [f"2013-06-{d:02d}" for d in range(1, 26)]


def test_the_training_set_covers_the_window_and_splits_by_time(features, spec):
    built = build_training_set(features, spec, DAYS)
    assert built.metadata()["upstream_partitions"] == 56 and built.metadata()["rows"] == len(features)
    assert built.versions == versions_by_day(features, spec.timestamp)
    split = split_of(built.frame)
    assert split.test[spec.timestamp].min() > split.valid[spec.timestamp].max() > split.train[spec.timestamp].max()
    assert built.summary["test"]["last_day"] == "2013-06-25" and SPLIT not in split.test.columns


def test_a_window_with_missing_days_names_them_and_the_fix(features, spec):
    partial = features[features[spec.timestamp] >= "2013-05-03"]
    with pytest.raises(TrainingError) as caught:
        build_training_set(partial, spec, DAYS)
    message = str(caught.value)
    assert "training.window_days" in message and "54 of 56 days" in message
    assert "2013-05-01, 2013-05-02" in message and f"{spec.name}/features" in message


def test_a_data_version_depends_on_content_not_on_the_index(features):
    day = features.head(100)
    assert content_hash(day) == content_hash(day.set_axis(range(1000, 1100)))
    assert content_hash(day) != content_hash(day.assign(temp=day["temp"] + 1))


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = use_store(uri, uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    return client, experiment


def _train_version(spec, frame, client, experiment) -> tuple[str, str]:
    with mlflow.start_run(experiment_id=experiment) as run:
        trained = train_and_log(spec, frame, "2013-06-19")
    version = Registry(client, spec.name).register(trained.model_uri, run.info.run_id, tags={})
    return version, run.info.run_id


def test_train_log_evaluate_and_promote_without_an_orchestrator(features, spec, store):
    client, experiment = store
    frame = build_training_set(features, spec, DAYS).frame
    version, run_id = _train_version(spec, frame, client, experiment)
    model = load_model(run_id, client.tracking_uri)
    assert model.manifest["data_versions"] == versions_by_day(frame.drop(columns=SPLIT), spec.timestamp)
    assert {"valid_roc_auc", "valid_auc"} & set(client.get_run(run_id).data.metrics)
    registry = Registry(client, spec.name)
    record, candidate = evaluate_version(spec, version, run_id, frame, registry, lambda r: load_model(r, client.tracking_uri))
    assert record.champion_version is None and record.result.value > 0.6
    assert "# Model card: flight_delay v1" in record.card
    with mlflow.start_run(run_id=run_id):
        log_evaluation(record, candidate, frame)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {MODEL_FILES, SMOKE_ROWS, REFERENCE_PROFILE, GATE_RESULTS, "model_card.md", "plots"} <= artifacts
    row = record.row({"version": version, "run_id": run_id})
    decision = decide_promotion(spec, registry, row, {"partition": "2013-06-19"})
    assert record.passed and decision["action"] == "promote" and registry.version_of("champion") == "1"


def test_a_failed_gate_is_recorded_and_moves_nothing(features, spec, store):
    client, experiment = store
    frame = build_training_set(features, spec, DAYS).frame
    version, run_id = _train_version(spec, frame, client, experiment)
    strict = spec.model_copy(update={"gates": spec.gates.model_copy(update={"min": 0.99})})
    registry = Registry(client, spec.name)
    record, _ = evaluate_version(strict, version, run_id, frame, registry, lambda r: load_model(r, client.tracking_uri))
    assert not record.passed and json.loads(record.row({"version": version})["gates"])[0]["passed"] is False
    decision = decide_promotion(strict, registry, record.row({"version": version}), {})
    assert decision["action"] == "gate-failed" and "metric_floor" in decision["reason"]
    assert registry.version_of("champion") is None
