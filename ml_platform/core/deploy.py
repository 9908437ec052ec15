"""Deploying a model's endpoint as a local process, and verifying it before anyone relies on it.

No Dagster here: the asset calls `ensure_local_server` and `smoke_test`, and only reports success once the
endpoint serves the expected version and answers held-out rows exactly as offline scoring does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import requests

from ml_platform.core.labels import scalar

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.images import Image

    from ml_platform.core.model import Model


def smoke_rows(model: Model, test: pd.DataFrame, count: int = 50) -> list[dict[str, Any]]:
    """A fixed sample of held-out rows (features only, JSON-safe) that every deployment must score exactly."""
    sample = test.sample(min(count, len(test)), random_state=0)[model.encoder.names]
    return [
        {str(k): (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in sample.to_dict(orient="records")
    ]


class DeployError(RuntimeError):
    """The endpoint could not be started, did not serve the expected version, or failed its smoke test."""


@dataclass
class SmokeResult:
    rows: int
    max_abs_diff: float
    p50_ms: float
    passed: bool
    label_mismatches: list[dict[str, Any]] = field(default_factory=list)  # {"row", "expected", "got"}, at most a few

    @property
    def problem(self) -> str:
        """Why the smoke test failed, in a sentence (empty when it passed)."""
        if self.passed:
            return ""
        if self.label_mismatches:
            first = self.label_mismatches[0]
            return (
                f"{len(self.label_mismatches)} row(s) answered another label than offline scoring, e.g. row "
                f"{first['row']}: expected {first['expected']!r}, got {first['got']!r}"
            )
        return f"max abs difference {self.max_abs_diff:.3g} between the endpoint and offline scoring"


@dataclass
class Deployment:
    """A verified endpoint: where it answers, its smoke test, and what was started or retired."""

    url: str
    smoke: SmokeResult
    details: dict[str, Any]


def deploy(
    target: str,
    model: str,
    version: str,
    port: int,
    home: Path,
    smoke_rows: list[dict[str, Any]],
    expected: np.ndarray,
    headers: dict[str, Any],
    model_folder: Callable[[], str | Path] | None = None,
    project_dir: Path | None = None,
    service_url: str | None = None,
    expected_labels: list[Any] | None = None,
) -> Deployment:
    """Serve `version` of `model` and prove it: locally, the long-lived process follows the registry alias
    (started when none answers); with Docker, an image with the model baked in replaces the old container
    blue/green. `model_folder()` gives the version's files (Docker only). With `service_url` (an endpoint the
    deployment runs as its own service, following the alias by itself), nothing is started: the service must
    come to serve `version` and pass the smoke test (`expected_labels`: each smoke row's offline label)."""
    if service_url:
        if _get(f"{service_url}/health") is None:
            raise DeployError(f"the endpoint service at {service_url} (ML_PLATFORM_ENDPOINTS) does not answer")
        wait_for_version(service_url, model, version, headers)
        return Deployment(
            service_url,
            smoke_test(service_url, model, smoke_rows, expected, headers, expected_labels=expected_labels),
            {"process": "endpoint service"},
        )
    if target == "docker":
        if project_dir is None or not (project_dir / "Dockerfile").exists():
            raise DeployError(f"no Dockerfile at {project_dir}: docker deploys run from a project checkout")
        if model_folder is None:
            raise DeployError("docker deploys bake the version's model files into the image: model_folder is needed")
        deployed = deploy_docker(
            model,
            version,
            Path(model_folder()),
            port,
            project_dir,
            home / "predictions" / "docker",
            smoke_rows,
            expected,
            headers,
            expected_labels=expected_labels,
        )
        return Deployment(
            deployed["url"],
            deployed["smoke"],
            {"container": deployed["container"], "image": deployed["image"], "retired": deployed["retired"]},
        )
    url, started_pid = ensure_local_server(model, port, home)
    wait_for_version(url, model, version, headers)
    return Deployment(
        url,
        smoke_test(url, model, smoke_rows, expected, headers, expected_labels=expected_labels),
        {"process": "started" if started_pid else "already running"},
    )


def _get(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        response = requests.get(url, timeout=timeout)
        return response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def ensure_local_server(
    model: str,
    port: int,
    home: Path,
    host: str = "127.0.0.1",
    reload_interval: float = 2.0,
    start_timeout: float = 90.0,
) -> tuple[str, int | None]:
    """A serving process for `model` on host:port, started (detached, in its own session) when none answers."""
    url = f"http://{host}:{port}"
    if _get(f"{url}/health") is not None:
        return url, None
    folder = home / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    # the child keeps its own copy of the log's descriptor; ours is closed once it has started
    with open(folder / f"{model}.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ml_platform.cli",
                "serve",
                "--model",
                model,
                "--host",
                host,
                "--port",
                str(port),
                "--reload-interval",
                str(reload_interval),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "ML_PLATFORM_HOME": str(home)},
        )
    (folder / f"{model}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeployError(f"the serving process exited with {process.returncode}; see {folder / f'{model}.log'}")
        if _get(f"{url}/health") is not None:
            return url, process.pid
        time.sleep(0.3)
    raise DeployError(f"no answer from {url} within {start_timeout:.0f} s; see {folder / f'{model}.log'}")


def stop_local_server(model: str, home: Path) -> None:
    """Stop the model's local endpoints (see `core.endpoints`), and the process an older deploy's pid file
    names, once its command line shows it is that model's server (pids are reused)."""
    from ml_platform.core.endpoints import EndpointError, _cmdline, is_serving_process, stop_endpoints

    with contextlib.suppress(EndpointError):
        stop_endpoints(home, model)
    pid_file = home / "serving" / f"{model}.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text())
            if is_serving_process(_cmdline(pid) or [], model):
                os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
        pid_file.unlink(missing_ok=True)


def wait_for_version(url: str, model: str, version: str, headers: dict[str, Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    served = None
    while time.monotonic() < deadline:
        try:
            served = requests.get(f"{url}/v1/models/{model}", headers=headers, timeout=2).json().get("version")
        except (requests.RequestException, ValueError):
            served = None
        if served == version:
            return
        time.sleep(0.5)
    raise DeployError(f"{url} serves version {served}, expected {version} within {timeout:.0f} s")


def smoke_test(
    url: str,
    model: str,
    rows: list[dict[str, Any]],
    expected: np.ndarray,
    headers: dict[str, Any],
    tolerance: float = 1e-9,
    expected_labels: list[Any] | None = None,
) -> SmokeResult:
    """Each row alone through HTTP must match offline scoring; also measures single-row latency. With
    `expected_labels` (offline `labels.predicted(expected)`), each row's answered label must be that one too:
    equal probabilities with a wrong class order would otherwise pass."""
    session = requests.Session()
    got, labels, latencies = [], [], []
    for row in rows:
        started = time.perf_counter()
        response = session.post(
            f"{url}/v1/models/{model}/predict", json={"instances": [row]}, headers=headers, timeout=10
        )
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise DeployError(f"smoke request answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        got.append(body["predictions"][0])
        labels.append((body.get("labels") or [None])[0])
    diff = float(np.max(np.abs(np.asarray(got, dtype=float) - np.asarray(expected, dtype=float)))) if rows else 0.0
    mismatches = _label_mismatches(labels, expected_labels)
    return SmokeResult(
        rows=len(rows),
        max_abs_diff=diff,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        passed=diff <= tolerance and not mismatches,
        label_mismatches=mismatches,
    )


def _label_mismatches(got: list[Any], expected: list[Any] | None) -> list[dict[str, Any]]:
    """The rows whose answered label is not the expected one; none when nothing is expected. A bool label must
    not pass for 1 (Python's True == 1), so that difference counts too."""
    if expected is None:
        return []
    if len(expected) != len(got):
        return [{"row": None, "expected": f"{len(expected)} labels", "got": f"{len(got)} rows"}]
    expected = [scalar(e) for e in expected]
    return [
        {"row": i, "expected": e, "got": g}
        for i, (e, g) in enumerate(zip(expected, got, strict=True))
        if not (e == g and isinstance(e, bool) == isinstance(g, bool))
    ]


# --- Docker: blue/green on two host ports (host networking has no bridge to put a proxy behind) ------------


def _build_model_image(
    client: DockerClient, model: str, version: str, model_folder: Path, project_dir: Path, base_tag: str
) -> Image:
    """The project image, then a thin image on top with the version's model files baked in and labelled."""
    import shutil
    import tempfile

    client.images.build(path=str(project_dir), tag=base_tag, network_mode="host", rm=True)
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch)
        shutil.copytree(model_folder, context / "model")
        (context / "Dockerfile").write_text(
            f"FROM {base_tag}\nCOPY --chown=app model /opt/model\n"
            f'LABEL {DOCKER_LABEL}="{model}" ml_platform.version="{version}"\n'
        )
        image, _ = client.images.build(
            path=str(context), tag=f"ml-platform-{model}:{version}", network_mode="host", rm=True
        )
    return image


DOCKER_LABEL = "ml_platform.model"


def deploy_docker(
    model: str,
    version: str,
    model_folder: Path,
    port: int,
    project_dir: Path,
    log_dir: Path,
    expected_rows: list[dict[str, Any]],
    expected: np.ndarray,
    headers: dict[str, Any],
    base_tag: str = "ml-platform:latest",
    health_timeout: float = 120.0,
    expected_labels: list[Any] | None = None,
) -> dict[str, Any]:
    """Build an image with the model baked in, run it beside the live one, verify it, then retire the old one.

    The two slots are `port` and `port + 1`; the new container takes the free one. If it fails its health
    check, version check or smoke test, it is removed and the old container keeps serving.
    """
    import docker

    client = docker.from_env(timeout=900)
    image = _build_model_image(client, model, version, model_folder, project_dir, base_tag)
    old = client.containers.list(filters={"label": f"{DOCKER_LABEL}={model}"})
    used = {int(c.labels.get("ml_platform.port", 0)) for c in old}
    new_port = port if port not in used else port + 1
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.chmod(0o777)  # the image runs as a non-root user
    container = client.containers.run(
        image.id,
        [
            "ml-platform",
            "serve",
            "--model",
            model,
            "--model-dir",
            "/opt/model",
            "--model-version",
            version,
            "--host",
            "127.0.0.1",
            "--port",
            str(new_port),
            "--log",
            f"/data/{model}.sqlite",
        ],
        network_mode="host",
        detach=True,
        volumes={str(log_dir): {"bind": "/data", "mode": "rw"}},
        labels={DOCKER_LABEL: model, "ml_platform.version": version, "ml_platform.port": str(new_port)},
        environment={k: v for k, v in os.environ.items() if k == "ML_PLATFORM_API_TOKEN"},
        name=f"ml-platform-{model}-v{version}-{int(time.time())}",
    )
    url = f"http://127.0.0.1:{new_port}"
    try:
        deadline = time.monotonic() + health_timeout
        while _get(f"{url}/health") is None:
            container.reload()
            if container.status not in ("created", "running") or time.monotonic() > deadline:
                raise DeployError(
                    f"container {container.name} did not become healthy: {container.logs().decode()[-1500:]}"
                )
            time.sleep(0.5)
        wait_for_version(url, model, version, headers, timeout=30)
        result = smoke_test(url, model, expected_rows, expected, headers, expected_labels=expected_labels)
        if not result.passed:
            raise DeployError(f"smoke test failed: {result.problem}")
    except BaseException:
        container.remove(force=True)
        raise
    for previous in old:
        previous.stop(timeout=10)
        previous.remove(force=True)
    return {
        "url": url,
        "container": container.name,
        "image": f"ml-platform-{model}:{version}",
        "retired": [c.name for c in old],
        "smoke": result,
    }
