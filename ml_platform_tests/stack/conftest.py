"""The production stack (deploy/docker-compose.yaml) on a real Docker engine, once for the stack tests.

The engine comes from the workplace's docker-engine tool (no image registry here): the project image is built
from this checkout, PostgreSQL and Prometheus from deploy/images (stand-ins for the official images, which
a user's machine pulls). Every port is a free one; the stack has its own compose project, volumes and labels,
and everything it started (services, run containers, volumes) is removed at the end.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
from ml_platform_tests.test_docker import start_engine

# deploy/stack.py, what `make up` runs (`deploy/` is not a package)
stack_tool = types.SimpleNamespace(**runpy.run_path(str(REPO / "deploy" / "stack.py")))

NAME = "mlp_stack_test"
IMAGE = "ml-platform:stack-test"
STANDINS = {
    "ML_PLATFORM_POSTGRES_IMAGE": ("ml-platform-standin/postgres:16", "postgres"),
    "ML_PLATFORM_PROMETHEUS_IMAGE": ("ml-platform-standin/prometheus:latest", "prometheus"),
}
READER = ("reader", "reader-password-123")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Webhook:
    """A loopback HTTP receiver of the platform's alerts (the failure alert of a killed run)."""

    def __init__(self):
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _engine() -> None:
    start_engine()
    if not (
        shutil.which("docker-compose")
        or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        pytest.fail(
            "neither docker-compose nor `docker compose` is installed: `make test` installs Debian's "
            "docker-compose; run it, or apt-get install docker-compose"
        )


def _build(tag: str, context: Path) -> None:
    subprocess.run(
        ["docker", "build", "--network", "host", "-q", "-t", tag, str(context)],
        check=True,
        timeout=1800,
        stdout=subprocess.DEVNULL,
    )


def _remove_everything(stack) -> None:
    """Run containers first (they hold the data volume), then the services and every volume."""

    def remove(label: str) -> None:
        found = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True
        ).stdout.split()
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True)

    remove(f"ml_platform/stack={NAME}")  # the services and the runs they launched
    stack.down(volumes=True)
    remove(f"ml_platform/stack={NAME}")  # a run launched while the services were stopping
    subprocess.run(
        [
            "docker",
            "volume",
            "rm",
            "-f",
            *(f"{NAME}_{v}" for v in ("data", "postgres", "mlflow_artifacts", "prometheus")),
        ],
        capture_output=True,
    )


@pytest.fixture(scope="package")
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="package")
def stack(tmp_path_factory, webhook):
    """The stack, up and healthy: (Stack, its settings)."""
    _engine()
    _build(IMAGE, REPO)
    for tag, folder in STANDINS.values():
        _build(tag, REPO / "deploy" / "images" / folder)
    env_file = tmp_path_factory.mktemp("stack") / "stack.env"
    settings = {name: str(free_port()) for name in stack_tool.DEFAULT_PORTS}
    settings.update(
        {name: tag for name, (tag, _) in STANDINS.items()},
        ML_PLATFORM_STACK=NAME,
        ML_PLATFORM_IMAGE=IMAGE,
        ML_PLATFORM_MLFLOW_READERS=":".join(READER),
        ML_PLATFORM_ALERT_WEBHOOK=webhook.url,
        ML_PLATFORM_MAX_CONCURRENT_RUNS="2",
    )
    settings["ML_PLATFORM_MLFLOW_UI"] = f"http://127.0.0.1:{settings['ML_PLATFORM_MLFLOW_PORT']}"
    stack_tool.write_env(env_file, settings)
    stack = stack_tool.Stack(env_file, NAME)
    _remove_everything(stack)  # a previous session killed midway
    _mechanics_spec(settings)
    stack_tool.write_env(env_file, settings)
    try:
        stack.compose("up", "-d", capture=True)
        stack.wait_healthy(timeout=300)
        yield stack
    except Exception:
        print(stack.compose("logs", "--tail", "40", check=False, capture=True).stdout[-8000:], file=sys.stderr)
        raise
    finally:
        _remove_everything(stack)


def _mechanics_spec(settings: dict) -> None:
    """The bundled spec with its gates opened, in the stack's data volume where every container reads it
    (ML_PLATFORM_SPECS): these tests judge the stack's mechanics, and the newest replayed week's fairness gap
    depends on the day the tests run."""
    import yaml

    from ml_platform.spec import BUNDLED_SPECS

    spec = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
    spec["gates"].update(min=0.5, max_regression=1.0, fairness={"group": "origin", "max_gap": 1.0})
    subprocess.run(
        [
            "docker",
            "volume",
            "create",
            "--label",
            "com.docker.compose.project=" + NAME,
            "--label",
            "com.docker.compose.volume=data",
            f"{NAME}_data",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-i",
            "--user",
            "0",
            "--network",
            "host",
            "-v",
            f"{NAME}_data:/data",
            IMAGE,
            "sh",
            "-c",
            "mkdir -p /data/specs && cat > /data/specs/flight_delay.yaml && chown -R 10001 /data",
        ],
        input=yaml.safe_dump(spec, sort_keys=False),
        text=True,
        check=True,
        capture_output=True,
    )
    settings["ML_PLATFORM_SPECS"] = "/var/lib/ml_platform/specs"


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    """The first truthy value of `predicate()` within `timeout` seconds, else a failure naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


@pytest.fixture(scope="package")
def mlflow_env(stack):
    """Environment variables that point MLflow clients at the stack's server as a given user."""
    env = stack.env

    def as_user(user: str, password: str) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": stack.url("ML_PLATFORM_MLFLOW_PORT"),
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }

    return {
        "service": as_user(env.get("ML_PLATFORM_MLFLOW_USER", "ml_platform"), env["ML_PLATFORM_MLFLOW_PASSWORD"]),
        "reader": as_user(*READER),
    }


def run_in_env(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Python in a child process with `env` on top of this one's (MLflow reads its credentials from the
    environment; a child keeps them out of this process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=timeout
    )
