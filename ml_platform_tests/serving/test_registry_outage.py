"""An endpoint that follows a real MLflow tracking server, while that server goes away and comes back; and the
deploy step verifying such an endpoint service instead of starting one."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import requests

from ml_platform.core.deploy import DeployError, deploy
from ml_platform.core.model import Model
from ml_platform_tests.serving.conftest import free_port
from ml_platform_tests.waiting import stop_server, tracking_server


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _ready(server) -> dict:
    return requests.get(f"{server.url}/ready", timeout=5).json()


def test_the_endpoint_keeps_serving_and_says_why_while_the_tracking_server_is_down(
    trained, registry_store, start_server, tmp_path
):
    _spec, folders, holdout = trained
    store_uri, _ = registry_store
    port = free_port()
    tracking = tracking_server(store_uri, port, tmp_path / "mlflow.log")
    try:
        url = f"http://127.0.0.1:{port}"  # the registry too: the fixture's SQLite URIs are in this environment
        server = start_server(
            "--reload-interval",
            "0.5",
            env={
                "MLFLOW_TRACKING_URI": url,
                "MLFLOW_REGISTRY_URI": url,
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
            },
        )
        assert _ready(server) == {"ready": True, "version": "1", "registry": "ok"}

        # the deploy step, given the service: verifies version and smoke rows, starts nothing
        rows = _records(holdout.head(5))
        expected = Model.load(folders[0]).predict(holdout.head(5))
        deployed = deploy(
            "local", "flight_delay", "1", 1, tmp_path / "deploy_home", rows, expected, {}, service_url=server.url
        )
        assert deployed.smoke.passed and deployed.details == {"process": "endpoint service"}
        assert not (tmp_path / "deploy_home").exists(), "nothing was started"
        with pytest.raises(DeployError, match="ML_PLATFORM_ENDPOINTS"):
            deploy(
                "local",
                "flight_delay",
                "1",
                1,
                tmp_path / "deploy_home",
                rows,
                expected,
                {},
                service_url=f"http://127.0.0.1:{free_port()}",
            )

        stop_server(tracking)
        deadline = time.monotonic() + 30
        while _ready(server)["registry"] == "ok":
            assert time.monotonic() < deadline, "/ready never noticed the tracking server going away"
            time.sleep(0.3)
        down = _ready(server)
        assert down["ready"] is True and down["version"] == "1"
        assert down["registry"]["reachable"] is False and down["registry"]["serving"] == "the loaded model"
        assert "Connection" in down["registry"]["error"] or "Max retries" in down["registry"]["error"]
        since = down["registry"]["since"]
        answer = requests.post(server.predict_url(), json={"instances": rows[:2]}, timeout=10)
        assert answer.status_code == 200 and answer.json()["version"] == "1"
        time.sleep(1.5)
        assert _ready(server)["registry"]["since"] == since, "the outage's start is kept, not reset per attempt"

        tracking = tracking_server(store_uri, port, tmp_path / "mlflow.log")
        deadline = time.monotonic() + 30
        while _ready(server)["registry"] != "ok":
            assert time.monotonic() < deadline, "/ready never saw the tracking server come back"
            time.sleep(0.3)
    finally:
        stop_server(tracking)
