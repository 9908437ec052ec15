"""Bring the production stack up and down: `make up` / `make down` call this; tests and benchmarks import it.

- `python deploy/stack.py up`: builds the project image, writes deploy/.env with random secrets on first use
  (0600; kept afterwards, so passwords stay stable across restarts), starts every service with compose and waits
  until the Dagster webserver, the MLflow server and the endpoint answer.
  Every image it does not build is present or pulled first: one that cannot be pulled is named with its
  service and the variable that replaces it, before anything starts. `--no-build` uses ML_PLATFORM_IMAGE as
  it is (an image loaded with `docker load` or pulled from your registry).
- `python deploy/stack.py down [--volumes]`: stops the services, removes every container labelled with the
  stack (run containers included), and with --volumes deletes all state.

Works with `docker compose` (v2) or Debian's `docker-compose` 1.29, whichever is installed. Failures are one
message on stderr and exit status 1, never a traceback.
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
from typing import NamedTuple

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


class Image(NamedTuple):
    """One image of the stack: the variable that sets it, its default, who runs it, and its bundled stand-in
    (a folder of deploy/images/ and the tag docs/production.md and the tests build it as), if any."""

    variable: str
    default: str
    services: str
    standin: str | None = None
    standin_tag: str | None = None


# Every `image: ${VARIABLE:-default}` of docker-compose.yaml (a test keeps the two equal).
IMAGES = (
    Image("ML_PLATFORM_IMAGE", "ml-platform:latest", "mlflow, code-server, webserver, daemon, endpoint and every run"),
    Image("ML_PLATFORM_POSTGRES_IMAGE", "postgres:16", "postgres", "postgres", "ml-platform-standin/postgres:16"),
    Image(
        "ML_PLATFORM_PROMETHEUS_IMAGE",
        "prom/prometheus:latest",
        "prometheus",
        "prometheus",
        "ml-platform-standin/prometheus:latest",
    ),
)


class StackError(Exception):
    """What went wrong and what to do about it, for a person: `main` prints it without a traceback."""


def _last_lines(text: str | None, lines: int = 6) -> str:
    return "\n".join(line for line in (text or "").strip().splitlines()[-lines:])


def require_docker() -> None:
    """The docker command and an engine that answers it, else a StackError saying what to install."""
    if not shutil.which("docker"):
        raise StackError(
            "the `docker` command is not installed: the stack needs a Docker engine and its CLI "
            "(Debian: apt-get install docker.io; or Docker's docker-ce packages)"
        )
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        info = subprocess.CompletedProcess([], 1, "", "no answer within 60 s")
    if info.returncode != 0:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise StackError(
            f"the Docker engine at {where} does not answer ({_last_lines(info.stderr, 2) or 'docker info failed'}): "
            "start it (systemctl start docker), or install it (Debian: apt-get install docker.io); "
            "your user needs access to its socket (the docker group, or root)"
        )


def compose_command() -> list[str]:
    """`docker compose` when the plugin is there, else `docker-compose`."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackError(
        "neither `docker compose` nor `docker-compose` is installed "
        "(Debian: apt-get install docker-compose; or Docker's docker-compose-plugin)"
    )


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

    @property
    def name(self) -> str:
        """The stack's name (ML_PLATFORM_STACK): its volumes' prefix and the `ml_platform/stack` label."""
        return self.env.get("ML_PLATFORM_STACK") or "ml_platform"

    def image(self, variable: str) -> str:
        return self.env.get(variable) or next(i.default for i in IMAGES if i.variable == variable)

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
        tag = image or self.image("ML_PLATFORM_IMAGE")
        try:
            subprocess.run(
                ["docker", "build", "--network", "host", "-q", "-t", tag, str(REPO)],
                check=True,
                timeout=1800,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as error:
            raise StackError(
                f"could not build {tag} (ML_PLATFORM_IMAGE: the image of {IMAGES[0].services}) from {REPO}:\n"
                f"{_last_lines(error.stderr or error.stdout, 8)}\n"
                "The build starts FROM python:3.11-slim and installs from PyPI. Without registry access, load a "
                "python:3.11-slim image first (docker load), or build the image where you can, move it with "
                "docker save / docker load, set ML_PLATFORM_IMAGE to its name and run `up --no-build` "
                "(docs/production.md: No registry access)."
            ) from None

    def ensure_images(self, built: bool = True) -> None:
        """Every image the stack runs is on this host, pulled if it can be: else a StackError naming each
        missing image, its services and the variable that replaces it. With `built`, ML_PLATFORM_IMAGE is left
        to `build`. Checked before anything starts, so a failure leaves nothing behind."""
        problems = []
        for image in IMAGES[1:] if built else IMAGES:
            name = self.image(image.variable)
            present = subprocess.run(["docker", "image", "inspect", name], capture_output=True, timeout=60)
            if present.returncode == 0:
                continue
            try:
                pull = subprocess.run(["docker", "pull", "-q", name], capture_output=True, text=True, timeout=1800)
                reason = _last_lines(pull.stderr or pull.stdout, 2)
            except subprocess.TimeoutExpired:
                pull, reason = None, "no answer within 30 minutes"
            if pull is not None and pull.returncode == 0:
                continue
            advice = f"Set {image.variable} in {self.env_file} to an image this host has or can pull"
            if image.standin:
                advice += (
                    "; without registry access, build the stand-in bundled in deploy/images/ and use it:\n"
                    f"  docker build --network host -t {image.standin_tag} {DEPLOY / 'images' / image.standin}\n"
                    f"  echo {image.variable}={image.standin_tag} >> {self.env_file}"
                )
            else:
                advice += " (or build it: `up` without --no-build)"
            problems.append(
                f"cannot pull {name}, the image of {image.services} ({image.variable}; default {image.default}): "
                f"{reason or 'docker pull failed'}.\n{advice}"
            )
        if problems:
            raise StackError("\n\n".join(problems) + "\n\n(docs/production.md: No registry access)")

    def up(self, timeout: float = 300) -> float:
        """Start every service and wait until they answer; returns the seconds it took."""
        started = time.monotonic()
        self.ensure_images(built=False)
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
        """Stop and remove the services, then every other container labelled with this stack: run containers
        (Docker removes each when it exits; a run still in flight, or one an older version left behind) would
        otherwise hold the data volume and fail `--volumes`. Then the volumes, if asked."""
        self.compose("down", "--remove-orphans", timeout=300)  # the daemon first: it launches no run after this
        self.remove_containers()
        if volumes:
            self.compose("down", "--remove-orphans", "--volumes", timeout=300)

    def containers(self, *labels: str) -> list[str]:
        """The ids of every container, running or not, labelled with this stack (and `labels`)."""
        filters = [
            arg for label in (f"ml_platform/stack={self.name}", *labels) for arg in ("--filter", f"label={label}")
        ]
        found = subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True, timeout=60)
        return found.stdout.split()

    def remove_containers(self) -> None:
        found = self.containers()
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True, timeout=300)


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
    parser.add_argument(
        "--no-build", action="store_true", help="up: use ML_PLATFORM_IMAGE as it is (loaded or pulled), do not build it"
    )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except StackError as error:
        print(f"stack.py {args.command}: {error}", file=sys.stderr)
    except subprocess.CalledProcessError as error:
        command = " ".join(str(part) for part in error.cmd)
        print(f"stack.py {args.command}: `{command}` exited {error.returncode} (its output above)", file=sys.stderr)
    except (subprocess.TimeoutExpired, TimeoutError) as error:
        print(f"stack.py {args.command}: {error} (the services' logs: `docker logs <container>`)", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace) -> int:
    require_docker()
    compose_command()
    stack = Stack(args.env_file, args.project)
    if args.command == "down":
        stack.down(args.volumes)
        return 0
    write_env(args.env_file)
    stack.ensure_images(built=not args.no_build)  # before the build: a missing image fails in seconds, not minutes
    if not args.no_build:
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
