"""deploy/stack.py (`make up` / `make down`) where something is missing: no Docker, no engine, no compose, an
image that cannot be pulled. Each failure is one message that says what to install or which variable to set,
exit status 1, no traceback; an image that cannot be pulled fails before anything starts."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STACK_PY = REPO / "deploy" / "stack.py"
stack_tool = types.SimpleNamespace(**runpy.run_path(str(STACK_PY)))


def _stack_py(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STACK_PY), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )


def _only_on_path(tmp_path: Path, **scripts: str) -> dict[str, str]:
    """An environment whose PATH holds nothing but the given shell scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def test_every_image_of_the_compose_file_is_known_to_the_stack_tool():
    compose = (REPO / "deploy" / "docker-compose.yaml").read_text()
    in_compose = set(re.findall(r"image: \$\{(\w+):-([^}]+)\}", compose))
    assert in_compose == {(image.variable, image.default) for image in stack_tool.IMAGES}
    for image in stack_tool.IMAGES:
        if image.standin:
            assert (REPO / "deploy" / "images" / image.standin / "Dockerfile").is_file()


@pytest.mark.parametrize("command", ["up", "down"])
def test_without_docker_the_stack_tool_says_which_package_to_install(tmp_path, command):
    result = _stack_py(command, "--env-file", str(tmp_path / "stack.env"), env=_only_on_path(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "`docker` command is not installed" in result.stderr and "apt-get install docker.io" in result.stderr
    assert not (tmp_path / "stack.env").exists(), "nothing written before the check"


def test_with_docker_but_no_engine_the_stack_tool_says_to_start_or_install_it(tmp_path):
    env = _only_on_path(
        tmp_path, docker='echo "Cannot connect to the Docker daemon at unix:///nowhere.sock" >&2; exit 1'
    )
    env["DOCKER_HOST"] = "unix:///nowhere.sock"
    result = _stack_py("up", "--env-file", str(tmp_path / "stack.env"), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Docker engine at unix:///nowhere.sock does not answer" in result.stderr
    assert "apt-get install docker.io" in result.stderr


def test_without_compose_the_stack_tool_says_which_package_to_install(tmp_path):
    # a docker whose engine answers but that has no compose plugin, and no docker-compose beside it
    env = _only_on_path(
        tmp_path, docker='[ "$1" = compose ] && { echo "unknown command: compose" >&2; exit 1; }; exit 0'
    )
    result = _stack_py("up", "--env-file", str(tmp_path / "stack.env"), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "neither `docker compose` nor `docker-compose` is installed" in result.stderr
    assert "apt-get install docker-compose" in result.stderr


@pytest.mark.docker
def test_an_image_that_cannot_be_pulled_is_named_with_its_variable_and_nothing_starts(tmp_path):
    from ml_platform_tests.test_docker import start_engine

    start_engine()
    if not (shutil.which("docker-compose") or subprocess.run(["docker", "compose", "version"]).returncode == 0):
        pytest.fail("neither docker-compose nor `docker compose` is installed: apt-get install docker-compose")
    name, missing = "mlp_unpullable", "127.0.0.1:1/nothing:latest"
    env_file = tmp_path / "stack.env"
    # prometheus' image: one every engine here has (the local base), so only postgres' is missing
    stack_tool.write_env(
        env_file,
        {
            "ML_PLATFORM_STACK": name,
            "ML_PLATFORM_POSTGRES_IMAGE": missing,
            "ML_PLATFORM_PROMETHEUS_IMAGE": "python:3.11-slim",
        },
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")}
    result = _stack_py("up", "--env-file", str(env_file), "--project", name, env=environment, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr
    assert f"cannot pull {missing}, the image of postgres (ML_PLATFORM_POSTGRES_IMAGE" in message, message
    assert "docker build --network host -t ml-platform-standin/postgres:16" in message
    assert str(REPO / "deploy" / "images" / "postgres") in message
    assert "prometheus" not in message.split("(docs/production.md")[0], "only the image that is missing is named"
    started = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert started == [], "nothing starts when an image is missing"
