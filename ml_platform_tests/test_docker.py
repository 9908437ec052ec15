"""The project image, built and run with a real Docker engine: the code location loads inside it.

Calls ../shared/tools/docker-engine up first (a local engine with host networking and a local python:3.11-slim
base image; no registry). Skipped, with the reason printed, only where no engine can run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE_TOOL = REPO.parent / "shared" / "tools" / "docker-engine"
TAG = "ml-platform:test"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image():
    if not ENGINE_TOOL.exists():
        pytest.skip(f"no Docker engine tool at {ENGINE_TOOL}: cannot start an engine on this machine")
    up = subprocess.run([str(ENGINE_TOOL), "up"], capture_output=True, text=True, timeout=1500)
    if up.returncode != 0:
        pytest.skip(f"Docker engine cannot run here (docker-engine up exited {up.returncode}): "
                    f"{(up.stderr or up.stdout)[-1500:]}")
    import docker

    client = docker.from_env(timeout=600)
    built, logs = client.images.build(path=str(REPO), tag=TAG, network_mode="host", rm=True, forcerm=True)
    yield client, built
    client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_code_location_loads_inside_the_image(image):
    client, built = image
    code = ("from ml_platform.definitions import defs; "
            "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))")
    output = client.containers.run(TAG, ["python", "-c", code], network_mode="host", remove=True).decode()
    for stage in ("raw", "features", "training_set", "model", "evaluation", "champion", "endpoint"):
        assert f"flight_delay/{stage}" in output
    uid = client.containers.run(TAG, ["id", "-u"], remove=True).decode().strip()
    assert uid != "0", "the image must run as a non-root user"


def test_the_default_command_serves_the_code_location(image):
    client, built = image
    port = _free_port()
    command = ["dagster", "code-server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--module-name", "ml_platform.definitions", "--location-name", "ml_platform"]
    assert built.attrs["Config"]["Cmd"][:3] == ["dagster", "code-server", "start"]
    container = client.containers.run(TAG, command, network_mode="host", detach=True)
    try:
        deadline = time.monotonic() + 180
        healthy = False
        while time.monotonic() < deadline and not healthy:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            check = subprocess.run([str(Path(sys.executable).parent / "dagster"), "api", "grpc-health-check",
                                    "--port", str(port), "--host", "127.0.0.1"], capture_output=True, text=True)
            healthy = check.returncode == 0
            if not healthy:
                time.sleep(2)
        assert healthy, container.logs().decode()[-3000:]
    finally:
        container.remove(force=True)
