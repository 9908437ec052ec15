"""Deploying a model's endpoint as a local process, and verifying it before anyone relies on it.

No Dagster here: the asset calls `ensure_local_server` and `smoke_test`, and only reports success once the
endpoint serves the expected version and answers held-out rows exactly as offline scoring does.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests


class DeployError(RuntimeError):
    """The endpoint could not be started, did not serve the expected version, or failed its smoke test."""


@dataclass
class SmokeResult:
    rows: int
    max_abs_diff: float
    p50_ms: float
    passed: bool


def _get(url: str, timeout: float = 2.0) -> dict | None:
    try:
        response = requests.get(url, timeout=timeout)
        return response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def ensure_local_server(model: str, port: int, home: Path, host: str = "127.0.0.1",
                        reload_interval: float = 2.0, start_timeout: float = 90.0) -> tuple[str, int | None]:
    """A serving process for `model` on host:port, started (detached, in its own session) when none answers."""
    url = f"http://{host}:{port}"
    if _get(f"{url}/health") is not None:
        return url, None
    folder = home / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"{model}.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_platform.cli", "serve", "--model", model, "--host", host, "--port", str(port),
         "--reload-interval", str(reload_interval)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "ML_PLATFORM_HOME": str(home)})
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
    pid_file = home / "serving" / f"{model}.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
        pid_file.unlink(missing_ok=True)


def wait_for_version(url: str, model: str, version: str, headers: dict, timeout: float = 60.0) -> None:
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


def smoke_test(url: str, model: str, rows: list[dict], expected: np.ndarray, headers: dict,
               tolerance: float = 1e-9) -> SmokeResult:
    """Each row alone through HTTP must match offline scoring; also measures single-row latency."""
    session = requests.Session()
    got, latencies = [], []
    for row in rows:
        started = time.perf_counter()
        response = session.post(f"{url}/v1/models/{model}/predict", json={"instances": [row]}, headers=headers,
                                timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise DeployError(f"smoke request answered {response.status_code}: {response.text[:300]}")
        got.append(response.json()["predictions"][0])
    diff = float(np.max(np.abs(np.asarray(got, dtype=float) - np.asarray(expected, dtype=float)))) if rows else 0.0
    return SmokeResult(rows=len(rows), max_abs_diff=diff, p50_ms=statistics.median(latencies) if latencies else 0.0,
                       passed=diff <= tolerance)
