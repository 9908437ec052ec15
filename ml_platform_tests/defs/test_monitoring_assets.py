"""Integration: drift of a day against the champion's reference, and live performance with delayed labels,
from the endpoint's real prediction log.
"""

from __future__ import annotations

import dagster as dg
import mlflow
import pandas as pd

from ml_platform.core.drift import drift_table
from ml_platform.core.mlflow_store import REFERENCE_PROFILE
from ml_platform.core.model import Model
from ml_platform_tests.defs.helpers import (
    _client,
    _day,
    _day_features,
    _log_drifted_traffic,
    _log_traffic,
    _materialize,
    _metadata,
    _partitions,
    _retrain,
    ev_roc_auc,
)


def test_drift_is_quiet_on_a_normal_day_and_fails_on_a_drifted_one(platform, instance):
    """A batch-scored normal day passes the fail check; logged live traffic with shifted inputs fails it."""
    make, home = platform
    defs = make()
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    normal_day = _day(partition, 2)
    normal = _materialize(defs, instance, "drift", normal_day)
    assert normal.success
    checks = {e.check_name: e for e in normal.get_asset_check_evaluations()}
    assert checks["drift_fail"].passed and checks["drift_fail"].partition == normal_day
    metadata = _metadata(normal, "drift")
    assert metadata["live_source"] == "features (batch scored)" and metadata["rows"] > 500
    # the day's features are Categoricals: every drift figure is that of the same rows as object text
    stored = pd.read_parquet(home / "storage" / "flight_delay" / "drift" / f"{normal_day}.parquet")
    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    features = pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{normal_day}.parquet")
    assert isinstance(features["carrier"].dtype, pd.CategoricalDtype)
    as_text = features.astype(dict.fromkeys(model.encoder.categorical, object))
    as_text["prediction"] = model.predict(as_text)
    expected = drift_table(as_text, mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_PROFILE}"), 0.1, 0.25)
    expected = expected[expected["feature"].isin(stored["feature"])].reset_index(drop=True)  # the spec's ignore
    assert len(expected) == len(stored) > 0
    pd.testing.assert_frame_equal(stored.drop(columns=["partition", "model_version"]), expected, check_exact=True)
    assert stored.set_index("feature").loc["carrier", "psi"] >= 0

    # Live traffic of a later day, logged by the endpoint, with hotter weather and another carrier mix.
    drifted_day = _day(partition, 4)
    _log_drifted_traffic(home, drifted_day)
    drifted = _materialize(defs, instance, "drift", drifted_day)
    assert drifted.success  # drift is reported by its checks, it does not fail the run
    checks = {e.check_name: e for e in drifted.get_asset_check_evaluations()}
    assert not checks["drift_fail"].passed and checks["drift_fail"].severity == dg.AssetCheckSeverity.ERROR
    over = checks["drift_fail"].metadata["features_over_threshold"].value
    assert {"carrier", "dest"} <= set(over) and "temp" not in over  # weather is ignored by the spec
    metadata = _metadata(drifted, "drift")
    assert metadata["live_source"] == "prediction log" and metadata["rows"] == 400
    assert "data:image/png;base64," in metadata["chart"]


def test_live_performance_joins_delayed_labels_by_key(platform, instance):
    make, home = platform
    defs = make({"monitoring.performance.floor": 0.55})
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    quiet_day = _day(partition, 1)
    quiet = _materialize(defs, instance, "performance", quiet_day)
    assert quiet.success and _metadata(quiet, "performance")["status"] == "no traffic"
    (check,) = quiet.get_asset_check_evaluations()
    assert check.passed and "nothing to judge" in check.description

    day = _day(partition, 3)
    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    served = _day_features(home, day)
    scores = model.predict(served)
    _log_traffic(home, "r", served, scores.tolist(), shadow=("9", (1 - scores).tolist()))
    result = _materialize(defs, instance, "performance", day)
    assert result.success
    metadata = _metadata(result, "performance")
    assert metadata["labelled_rows"] == 500 and metadata["label_coverage"] == 1.0
    expected = ev_roc_auc(served["delayed"], scores)
    assert abs(metadata["roc_auc"] - expected) < 1e-12
    table = pd.read_parquet(home / "storage" / "flight_delay" / "performance" / f"{day}.parquet")
    assert set(zip(table["role"], table["version"], strict=True)) == {("answer", "1"), ("shadow", "9")}
    shadow_auc = table.loc[table["role"] == "shadow", "roc_auc"].iloc[0]
    assert abs(shadow_auc - (1 - expected)) < 1e-9  # the inverted shadow is exactly as bad as the answer is good
    (check,) = result.get_asset_check_evaluations()
    assert check.passed == (expected >= 0.55)

    # Live performance under the floor is a reason to retrain, like drift.
    strict = make({"monitoring.performance.floor": 0.99})
    failing = _materialize(strict, instance, "performance", day)
    (check,) = failing.get_asset_check_evaluations()
    assert not check.passed and "vs floor 0.99" in check.description
    sensor = strict.resolve_sensor_def("retrain_on_monitoring")
    (request,) = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=strict)).run_requests
    assert request.tags["ml_platform/reason"] == "performance"
    assert request.tags["ml_platform/trigger"] == f"flight_delay/performance {day}"


def test_logged_multiclass_probabilities_become_the_predicted_class_only_under_a_reference_that_lists_them():
    from ml_platform.defs.monitoring_assets import _with_predicted_class

    live = pd.DataFrame(
        {"x": [1, 2, 3, 4], "prediction": None, "_probabilities": [[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.5], None]}
    )
    rows, left_out = _with_predicted_class(live, {"prediction_classes": ["EWR", "JFK", "LGA"]})
    assert rows["prediction"].tolist()[:2] == ["JFK", "EWR"] and rows["prediction"].iloc[2:].isna().all()
    assert left_out == 1  # the vector of two; a row without one is no vector at all
    unchanged, none = _with_predicted_class(live, {"numeric": {}, "categorical": {}})  # a reference of before
    assert unchanged is live and none == 0
