"""Bring the production stack up and down: `make up` / `make down` call this; tests and benchmarks import it.

- `python deploy/stack.py up`: builds the project image, writes deploy/.env with random secrets on first use
  (0600; kept afterwards, so passwords stay stable across restarts), starts every service with compose and waits
  until the Dagster webserver, the MLflow server and the endpoint answer.
- `python deploy/stack.py down [--volumes]`: stops the services (and with --volumes, deletes all state).

Works with `docker compose` (v2) or Debian's `docker-compose` 1.29, whichever is installed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
COMPOSE_FILE = DEPLOY / "docker-compose.yaml"
SECRETS = (
    "ML_PLATFORM_POSTGRES_PASSWORD",
    "ML_PLATFORM_MLFLOW_ADMIN_PASSWORD",
    "ML_PLATFORM_MLFLOW_PASSWORD",
    "ML_PLATFORM_MLFLOW_SECRET_KEY",
    "ML_PLATFORM_API_TOKEN",
)
DEFAULT_PORTS = {
    "ML_PLATFORM_POSTGRES_PORT": 5432,
    "ML_PLATFORM_MLFLOW_PORT": 5000,
    "ML_PLATFORM_CODE_SERVER_PORT": 4000,
    "ML_PLATFORM_WEBSERVER_PORT": 3000,
    "ML_PLATFORM_ENDPOINT_PORT": 8080,
    "ML_PLATFORM_PROMETHEUS_PORT": 9090,
}


def compose_command() -> list[str]:
    """`docker compose` when the plugin is there, else `docker-compose`."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)")


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def write_env(path: Path, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The stack's settings file: what is there already, then `settings`, then a random value for each secret
    still missing. Written 0600: it holds the passwords."""
    values = {**read_env(path), **(settings or {})}
    for name in SECRETS:
        values.setdefault(name, secrets.token_urlsafe(24))
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_text(
        "# The production stack's settings and secrets (deploy/stack.py); keep this file private.\n"
        + "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
    )
    return values


class Stack:
    """One compose project: its settings file, its name, and the URLs of its services."""

    def __init__(self, env_file: Path, project: str = "ml_platform"):
        self.env_file, self.project = env_file, project

    @property
    def env(self) -> dict[str, str]:
        return read_env(self.env_file)

    def port(self, name: str) -> int:
        return int(self.env.get(name) or DEFAULT_PORTS[name])

    def url(self, port_name: str) -> str:
        return f"http://{self.env.get('ML_PLATFORM_BIND') or '127.0.0.1'}:{self.port(port_name)}"

    def compose(self, *args: str, check: bool = True, timeout: float = 600, capture: bool = False):
        command = [
            *compose_command(),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(self.env_file),
            "-p",
            self.project,
            *args,
        ]
        # compose substitutes from its own environment first: only the settings file may decide
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")}
        return subprocess.run(
            command, check=check, timeout=timeout, env=environment, cwd=DEPLOY, capture_output=capture, text=True
        )

    def build(self, image: str | None = None) -> None:
        subprocess.run(
            [
                "docker",
                "build",
                "--network",
                "host",
                "-q",
                "-t",
                image or self.env.get("ML_PLATFORM_IMAGE") or "ml-platform:latest",
                str(REPO),
            ],
            check=True,
            timeout=1800,
            stdout=subprocess.DEVNULL,
        )

    def up(self, timeout: float = 300) -> float:
        """Start every service and wait until they answer; returns the seconds it took."""
        started = time.monotonic()
        self.compose("up", "-d", "--remove-orphans")
        self.wait_healthy(timeout)
        return time.monotonic() - started

    def wait_healthy(self, timeout: float = 300) -> None:
        checks = {
            "webserver": self.url("ML_PLATFORM_WEBSERVER_PORT") + "/server_info",
            "mlflow": self.url("ML_PLATFORM_MLFLOW_PORT") + "/health",
            "endpoint": self.url("ML_PLATFORM_ENDPOINT_PORT") + "/health",
            "prometheus": self.url("ML_PLATFORM_PROMETHEUS_PORT") + "/-/ready",
        }
        deadline = time.monotonic() + timeout
        waiting = dict(checks)
        while waiting and time.monotonic() < deadline:
            for service, url in list(waiting.items()):
                if answers(url):
                    waiting.pop(service)
            if waiting:
                time.sleep(1)
        if waiting:
            raise TimeoutError(f"not answering after {timeout:.0f} s: {', '.join(waiting)}")

    def down(self, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--env-file", type=Path, default=DEPLOY / ".env")
    parser.add_argument("--project", default="ml_platform")
    parser.add_argument("--volumes", action="store_true", help="down: also delete the stack's data volumes")
    args = parser.parse_args(argv)
    stack = Stack(args.env_file, args.project)
    if args.command == "down":
        stack.down(args.volumes)
        return 0
    write_env(args.env_file)
    stack.build()
    seconds = stack.up()
    print(
        f"stack up in {seconds:.0f} s: Dagster {stack.url('ML_PLATFORM_WEBSERVER_PORT')}, "
        f"MLflow {stack.url('ML_PLATFORM_MLFLOW_PORT')}, endpoint {stack.url('ML_PLATFORM_ENDPOINT_PORT')}, "
        f"Prometheus {stack.url('ML_PLATFORM_PROMETHEUS_PORT')} (secrets in {args.env_file})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
