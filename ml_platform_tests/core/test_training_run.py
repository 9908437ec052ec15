"""A retraining partition's training work without an orchestrator: the window's training set, and a version
trained and logged to a real local MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import pytest

from ml_platform.core.data_versions import versions_by_day
from ml_platform.core.mlflow_store import download_model_files, load_model
from ml_platform.core.recipe import (
    DERIVED_TAG,
    DIRTY_TAG,
    GIT_COMMIT_TAG,
    RESOLVED_SPEC,
    derived_digests,
    source_state,
)
from ml_platform.core.training_run import SPLIT, TrainingError, build_training_set, split_of, train_and_log
from ml_platform.spec import load_spec

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


def test_a_trained_version_carries_its_data_versions_and_validation_metrics(spec, store, training_set):
    client, experiment = store
    frame = training_set
    with mlflow.start_run(experiment_id=experiment) as run:
        trained = train_and_log(spec, frame, "2013-06-19")
    run_id = run.info.run_id
    model = load_model(run_id, client.tracking_uri)
    files = download_model_files(run_id, client.tracking_uri)
    assert trained.model_sha256 == hashlib.sha256((files / "model.txt").read_bytes()).hexdigest()
    assert model.manifest["data_versions"] == versions_by_day(frame.drop(columns=SPLIT), spec.timestamp)
    run = client.get_run(run_id)
    assert "valid_roc_auc" in run.data.metrics and run.data.params["partition"] == "2013-06-19"
    assert len(client.get_metric_history(run_id, "curve_valid_auc")) > 1
    # and its recipe: the resolved spec, the source's git state (a checkout here), each derived function's digest
    resolved = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=RESOLVED_SPEC))
    assert load_spec(resolved).digest == spec.digest
    assert run.data.tags[GIT_COMMIT_TAG] == source_state(spec.path.parent).commit and DIRTY_TAG in run.data.tags
    for name, digest in derived_digests(spec).items():
        assert run.data.tags[DERIVED_TAG.format(name=name)] == digest


def test_hourly_partitions_are_covered_by_their_time_windows(features, spec):
    """Hourly data partitions: coverage and data versions per hour (keys like 2013-05-01-07:00), not per day."""
    from datetime import datetime, timedelta

    from ml_platform.core.data_versions import versions_by_partition

    stamps = features[spec.timestamp]
    start = datetime(2013, 5, 1)
    hours = {
        (start + timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M"): (
            start + timedelta(hours=h),
            start + timedelta(hours=h + 1),
        )
        for h in range(56 * 24)
    }
    busy = {k: w for k, w in hours.items() if ((stamps >= w[0]) & (stamps < w[1])).any()}
    built = build_training_set(features, spec, busy)
    assert built.versions == versions_by_partition(features, spec.timestamp, busy)
    assert list(built.versions) == list(busy)
    assert built.metadata()["upstream_partitions"] == len(busy) > 56 * 15
    assert built.metadata()["window"] == "2013-05-01-05:00 → 2013-06-25-23:00"
    with pytest.raises(TrainingError) as caught:
        build_training_set(features, spec, hours)  # night hours have no departures
    message = str(caught.value)
    assert f"has features for {len(busy)} of {56 * 24} hours" in message and "2013-05-01-00:00" in message
