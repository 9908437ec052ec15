"""Integration: the endpoint deploys the champion (real local server, smoke test) and redeploys when it moves;
batch predictions of a day.
"""

from __future__ import annotations

import socket

import dagster as dg
import mlflow
import numpy as np
import pandas as pd

from ml_platform.core.model import Model
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
        as_text = features.astype({n: object for n in model.encoder.categorical})
        assert np.array_equal(frame["prediction"].to_numpy(), model.predict(as_text))
    finally:
        stop_local_server("flight_delay", home)


def test_automation_redeploys_the_endpoint_when_the_champion_moves(platform, instance):
    make, home = platform
    defs = make()
    endpoint = dg.AssetKey(["flight_delay", "endpoint"])
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                               asset_selection=dg.AssetSelection.assets(endpoint))
    assert before.total_requested == 0  # no champion yet: nothing to deploy
    assert _retrain(defs, instance, _partitions(defs)[0]).success
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              asset_selection=dg.AssetSelection.assets(endpoint), cursor=before.cursor)
    assert after.total_requested == 1
    sensor_names = {s.name for s in defs.sensors}
    assert {"ml_platform_automation", "alert_on_run_failure", "flight_delay_retrain_on_monitoring"} <= sensor_names
