"""Integration: the endpoint deploys the champion (real local server, smoke test) and redeploys when it moves;
batch predictions of a day.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import dagster as dg
import mlflow
import numpy as np
import pandas as pd

from ml_platform.core.model import Model
from ml_platform_tests.core.text_classifier import origin_model
from ml_platform_tests.defs.helpers import _client, _day, _materialize, _metadata, _partitions, _retrain


def test_endpoint_deploys_the_champion_and_predictions_score_a_day(platform, instance):
    """From a promoted champion to a live local endpoint that answers HTTP, and a day of batch scores."""
    import requests

    from ml_platform.core.deploy import stop_local_server

    make, home = platform
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    defs = make({"serving.port": port})
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    try:
        result = _materialize(defs, instance, "endpoint")
        assert result.success
        metadata = _metadata(result, "endpoint")
        assert metadata["version"] == "1"
        assert metadata["smoke_test"] == {"rows": 50, "max_abs_diff": 0.0, "passed": True}
        assert metadata["url"] == f"http://127.0.0.1:{port}/v1/models/flight_delay"
        info = requests.get(metadata["url"], timeout=5).json()
        assert info["version"] == "1"
        day = _day(partition, 3)
        scored = _materialize(defs, instance, "predictions", day)
        assert scored.success
        frame = pd.read_parquet(home / "storage" / "flight_delay" / "predictions" / f"{day}.parquet")
        assert (frame["model_version"] == "1").all() and frame["prediction"].between(0, 1).all()
        assert frame["flight_id"].is_unique and len(frame) > 500
        # the day's features arrive as Categoricals; the scores are those of the same rows as object text
        features = pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{day}.parquet")
        run_id = _client(home).get_model_version("flight_delay", "1").run_id
        model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
        assert all(isinstance(features[n].dtype, pd.CategoricalDtype) for n in model.encoder.categorical)
        as_text = features.astype(dict.fromkeys(model.encoder.categorical, object))
        assert np.array_equal(frame["prediction"].to_numpy(), model.predict(as_text))
    finally:
        stop_local_server("flight_delay", home)


def test_automation_redeploys_the_endpoint_when_the_champion_moves(platform, instance):
    make, _home = platform
    defs = make()
    endpoint = dg.AssetKey(["flight_delay", "endpoint"])
    before = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(endpoint)
    )
    assert before.total_requested == 0  # no champion yet: nothing to deploy
    assert _retrain(defs, instance, _partitions(defs)[0]).success
    after = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(endpoint), cursor=before.cursor
    )
    assert after.total_requested == 1
    sensor_names = {s.name for s in defs.sensors}
    assert {"ml_platform_automation", "alert_on_run_failure", "retrain_on_monitoring"} <= sensor_names


def test_batch_predictions_of_a_multiclass_model_store_probabilities_and_the_predicted_label(tmp_path, write_spec):
    """A real week of flights trains an origin classifier; the next day's batch predictions hold each row's
    probabilities in class order and its predicted label, and the metadata counts the predicted classes."""
    from datetime import datetime

    from ml_platform.core.features import build_features
    from ml_platform.core.sources import nycflights13
    from ml_platform.defs.resources import DaskCluster, MlflowTracking
    from ml_platform.defs.serving_assets import predictions_asset
    from ml_platform.spec import load_spec

    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "task": "multiclass",
                "gates.metric": "macro_f1",
                "monitoring.performance.metric": "macro_f1",
                "target.expression": "(arr_delay > 15) * 1 + (arr_delay > 60) * 1",
            },
            drop=("gates.fairness",),
        )
    )
    raw = nycflights13.load(nycflights13.Replay(offset_days=0), datetime(2013, 5, 1), datetime(2013, 5, 9))
    features = build_features(raw, spec)[0]
    day = features[spec.timestamp].dt.strftime("%Y-%m-%d")
    model, rows = origin_model(features[day < "2013-05-08"]), features[day == "2013-05-08"]

    class Champion(MlflowTracking):
        def champion(self, name):
            return "3", model, "run"

    asset = predictions_asset(spec, dg.DailyPartitionsDefinition(start_date="2013-05-01"))
    output = asset(
        dg.build_asset_context(partition_key="2013-05-08"),
        mlflow_tracking=Champion(),
        dask_cluster=DaskCluster(),
        features=rows,
    )
    frame = output.value
    assert len(frame) == len(rows) > 500 and (frame["model_version"] == "3").all()
    probabilities = np.array(frame["prediction"].tolist())
    assert np.array_equal(probabilities, model.predict(rows))
    assert frame["predicted_label"].tolist() == model.predict_labels(rows)
    assert set(frame["predicted_label"]) <= {"EWR", "JFK", "LGA"} and frame["predicted_label"].nunique() > 1
    assert output.metadata["classes"].value == ["EWR", "JFK", "LGA"]
    counts = output.metadata["predicted_classes"].value
    assert counts == frame["predicted_label"].value_counts().to_dict() and "mean_prediction" not in output.metadata
    # the Dask engine's scoring gives the same rows partition by partition, and drift's batch fallback the labels
    import dask.dataframe as dd

    from ml_platform.core.dask_scoring import _with_prediction, score_on_dask

    stored = SimpleNamespace(frame=dd.from_pandas(rows.reset_index(drop=True), npartitions=3))
    on_dask = score_on_dask(stored, model, "3", list(frame.columns[:-3])).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(on_dask, frame.reset_index(drop=True), check_dtype=False)
    assert _with_prediction(rows, model)["prediction"].tolist() == model.predict_labels(rows)
