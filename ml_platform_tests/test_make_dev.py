"""End to end: `make dev` serves the UI with the flight_delay graph, and a real day materializes through it.

Starts the real command (webserver and daemon) on 127.0.0.1 in a temporary home, drives it through the GraphQL
API like the UI does, and ends the whole process group afterwards.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
ASSET_NODES = """
query { assetNodes { assetKey { path } groupName dependencyKeys { path }
        partitionDefinition { description } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path, make_dev):
    port = _free_port()
    home = tmp_path / "home"
    process = make_dev(port, {**os.environ, "ML_PLATFORM_HOME": str(home)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.log_path.read_text()[-3000:]
        try:
            nodes = requests.post(f"{url}/graphql", json={"query": ASSET_NODES}, timeout=10).json()
            if nodes.get("data", {}).get("assetNodes"):
                return url, port, home
        except (requests.ConnectionError, requests.Timeout, ValueError):
            pass
        time.sleep(2)
    pytest.fail("dagster dev did not serve the code location within 240 s:\n" + process.log_path.read_text()[-3000:])


def test_make_dev_serves_the_graph_and_materializes_a_real_day(dagster_dev):
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    url, port, home = dagster_dev
    assert requests.get(url, timeout=10).status_code == 200
    nodes = requests.post(f"{url}/graphql", json={"query": ASSET_NODES}, timeout=30).json()["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {"flight_delay/raw", "flight_delay/features"} <= set(by_key)
    assert by_key["flight_delay/features"]["dependencyKeys"] == [{"path": ["flight_delay", "raw"]}]
    assert by_key["flight_delay/raw"]["groupName"] == "flight_delay"
    assert "Daily" in by_key["flight_delay/raw"]["partitionDefinition"]["description"]
    checks = by_key["flight_delay/raw"]["assetChecksOrError"]["checks"]
    assert checks == [{"name": "schema", "blocking": True}]
    # Dagster's home is inside ML_PLATFORM_HOME, with the repo's dagster.yaml
    assert (home / "dagster" / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()

    pin = next((home / "replay").glob("flight_delay.json"))
    assert pin.exists()
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    from datetime import date, timedelta

    partition = (date.today() - timedelta(days=2)).isoformat()
    run_id = client.submit_job_execution(
        "flight_delay_data", repository_location_name="ml_platform", tags={"dagster/partition": partition}
    )
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status}"
    for stage in ("raw", "features"):
        assert (home / "storage" / "flight_delay" / stage / f"{partition}.parquet").exists()
