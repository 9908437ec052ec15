"""The project image, built and run with a real Docker engine: the code location loads inside it.

Calls ../shared/tools/docker-engine up first (a local engine with host networking and a local python:3.11-slim
base image; no registry). Skipped, with the reason printed, only where no engine can run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The workplace's engine tool sits beside the checkout (../shared); a clone elsewhere finds it by path or env.
ENGINE_TOOL = next(
    (
        p
        for p in (
            Path(os.environ.get("DOCKER_ENGINE_TOOL", "/nonexistent")),
            REPO.parent / "shared" / "tools" / "docker-engine",
            Path("/work/shared/tools/docker-engine"),
        )
        if p.exists()
    ),
    REPO.parent / "shared" / "tools" / "docker-engine",
)
TAG = "ml-platform:test"

pytestmark = pytest.mark.docker


def start_engine() -> None:
    """The local Docker engine, started (and its base image built) when missing; a loud skip where none can run."""
    if not ENGINE_TOOL.exists():
        pytest.skip(f"no Docker engine tool at {ENGINE_TOOL}: cannot start an engine on this machine")
    up = subprocess.run([str(ENGINE_TOOL), "up"], capture_output=True, text=True, timeout=1500)
    if up.returncode != 0:
        pytest.skip(
            f"Docker engine cannot run here (docker-engine up exited {up.returncode}): "
            f"{(up.stderr or up.stdout)[-1500:]}"
        )


@pytest.fixture(scope="module")
def image():
    start_engine()
    import docker

    client = docker.from_env(timeout=600)
    built, _logs = client.images.build(path=str(REPO), tag=TAG, network_mode="host", rm=True, forcerm=True)
    yield client, built
    client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_code_location_loads_inside_the_image(image):
    client, _built = image
    code = (
        "from ml_platform.definitions import defs; "
        "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))"
    )
    output = client.containers.run(TAG, ["python", "-c", code], network_mode="host", remove=True).decode()
    for stage in ("raw", "features", "training_set", "model", "evaluation", "champion", "endpoint"):
        assert f"flight_delay/{stage}" in output
    uid = client.containers.run(TAG, ["id", "-u"], network_mode="host", remove=True).decode().strip()
    assert uid != "0", "the image must run as a non-root user"


def test_the_default_command_serves_the_code_location(image):
    client, built = image
    port = _free_port()
    # The image's own CMD, with only --port replaced (host networking: a free host port, not 4000).
    default = built.attrs["Config"]["Cmd"]
    assert default[:3] == ["dagster", "code-server", "start"] and "--port" in default
    command = list(default)
    command[command.index("--port") + 1] = str(port)
    container = client.containers.run(TAG, command, network_mode="host", detach=True)
    try:
        deadline = time.monotonic() + 180
        healthy = False
        while time.monotonic() < deadline and not healthy:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            check = subprocess.run(
                [
                    str(Path(sys.executable).parent / "dagster"),
                    "api",
                    "grpc-health-check",
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                ],
                capture_output=True,
                text=True,
            )
            healthy = check.returncode == 0
            if not healthy:
                time.sleep(2)
        assert healthy, container.logs().decode()[-3000:]
    finally:
        container.remove(force=True)


def test_docker_deploy_is_blue_green_and_keeps_the_old_one_on_failure(image, tmp_path):
    """v1 deploys; v2 replaces it after passing its checks; a broken v3 is removed and v2 keeps serving."""
    import shutil
    from datetime import datetime

    import requests

    from ml_platform.core.deploy import DOCKER_LABEL, DeployError, deploy_docker
    from ml_platform.core.features import build_features
    from ml_platform.core.sources import nycflights13
    from ml_platform.core.training import split_by_time, train
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    client, _ = image
    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    raw = nycflights13.load(nycflights13.Replay(0), datetime(2013, 5, 1), datetime(2013, 6, 26))
    split = split_by_time(build_features(raw, spec)[0], spec)
    model = train(spec, split).model
    folder = model.save(tmp_path / "model")
    rows = [
        {k: (None if v != v else v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in split.test[spec.features.names].head(20).to_dict(orient="records")
    ]
    expected = model.predict(split.test.head(20))
    port = _free_port()
    logs = tmp_path / "logs"
    try:
        first = deploy_docker("flight_delay", "1", folder, port, REPO, logs, rows, expected, {}, base_tag=TAG)
        assert first["smoke"].passed and first["retired"] == []
        second = deploy_docker("flight_delay", "2", folder, port, REPO, logs, rows, expected, {}, base_tag=TAG)
        assert second["retired"] == [first["container"]] and second["url"] != first["url"]
        assert requests.get(f"{second['url']}/v1/models/flight_delay", timeout=5).json()["version"] == "2"
        broken = tmp_path / "broken"
        shutil.copytree(folder, broken)
        (broken / "model.txt").write_text("not a model")
        with pytest.raises(DeployError):
            deploy_docker(
                "flight_delay", "3", broken, port, REPO, logs, rows, expected, {}, base_tag=TAG, health_timeout=30
            )
        live = client.containers.list(filters={"label": f"{DOCKER_LABEL}=flight_delay"})
        assert [c.name for c in live] == [second["container"]]
        answer = requests.post(
            f"{second['url']}/v1/models/flight_delay/predict", json={"instances": rows[:1]}, timeout=5
        ).json()
        assert answer["version"] == "2" and abs(answer["predictions"][0] - expected[0]) <= 1e-9
    finally:
        for container in client.containers.list(all=True, filters={"label": f"{DOCKER_LABEL}=flight_delay"}):
            container.remove(force=True)
