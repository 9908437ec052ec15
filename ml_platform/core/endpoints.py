"""The local endpoints a platform home started: each `ml-platform serve` process records itself under
`<home>/serving/endpoints/` while it runs, so `ml-platform endpoints` can list them and `ml-platform stop` can
stop one, even after the `dagster dev` that deployed it is gone (endpoints outlive it by design).

A record names a process id, and process ids are reused: before anything is reported alive or signalled, the
process is checked to be that very server (its command line is `ml-platform serve --model <model>` and, on
Linux, its start time is the one recorded). A record whose process is gone, or whose id now belongs to another
process, is stale: it is listed as such, and removed on `stop` without signalling anyone.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ALIVE, DEAD, REUSED = "alive", "dead", "pid reused"


class EndpointError(RuntimeError):
    """Nothing to stop, or a process that would not stop."""


def records_folder(home: Path) -> Path:
    return Path(home) / "serving" / "endpoints"


def _record_path(home: Path, model: str, port: int) -> Path:
    return records_folder(home) / f"{model}-{port}.json"


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name (field 2) may contain spaces


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments, or None when it does not exist (or cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    if raw:
        return raw.decode(errors="replace").rstrip("\0").split("\0")
    try:  # no /proc (macOS), or a zombie: ask ps
        import subprocess

        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def is_serving_process(argv: list[str], model: str) -> bool:
    """Whether a command line is `ml-platform serve --model <model>` (as a script or `-m ml_platform.cli`)."""
    names = [Path(arg).name for arg in argv]
    platform = "ml_platform.cli" in argv or "ml-platform" in names
    if not platform or "serve" not in argv:
        return False
    return (
        any(arg == "--model" and value == model for arg, value in itertools.pairwise(argv))
        or f"--model={model}" in argv
    )


def record_endpoint(
    home: Path, model: str, host: str, port: int, pid: int | None = None, scheme: str = "http"
) -> Path | None:
    """This (or `pid`'s) serving process, recorded for `ml-platform endpoints` and `ml-platform stop`. A live
    server already recorded on the port keeps its record (this one will not get the port): None."""
    pid = pid or os.getpid()
    path = _record_path(home, model, port)
    try:
        existing = json.loads(path.read_text())
        if int(existing["pid"]) != pid and _state(existing) == ALIVE:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model,
        "host": host,
        "port": port,
        "scheme": scheme,
        "pid": pid,
        "pgid": os.getpgid(pid),
        "proc_start": _proc_start(pid),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(_cmdline(pid) or []),
    }
    temporary = path.with_name(f".{path.name}.{pid}.tmp")
    temporary.write_text(json.dumps(record, indent=1))
    temporary.replace(path)
    return path


def forget_endpoint(home: Path, model: str, port: int, pid: int | None = None) -> None:
    """Remove the record, if it still names this process (a newer server on the port keeps its own)."""
    path = _record_path(home, model, port)
    try:
        if json.loads(path.read_text()).get("pid") == (pid or os.getpid()):
            path.unlink()
    except (OSError, ValueError):
        pass


@dataclass
class Endpoint:
    """One recorded endpoint and what is true of it now."""

    model: str
    host: str
    port: int
    pid: int
    state: str  # "alive", "dead" (the process is gone) or "pid reused" (by another process)
    version: str | None  # the version it serves now (asked over HTTP), None when it does not answer
    started_at: str
    record: str
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.state == ALIVE

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": self.url, "alive": self.alive}


def _state(record: dict[str, Any]) -> str:
    pid = int(record["pid"])
    argv = _cmdline(pid) if _running(pid) else None
    if argv is None:
        return DEAD
    started = _proc_start(pid)
    if not is_serving_process(argv, record["model"]) or (
        record.get("proc_start") and started and started != record["proc_start"]
    ):
        return REUSED
    return ALIVE


def served_version(url: str, model: str, timeout: float = 2.0) -> str | None:
    """The version the endpoint reports serving (with the API token when one is set), or None."""
    import requests

    token = os.environ.get("ML_PLATFORM_API_TOKEN")
    try:
        response = requests.get(
            f"{url}/v1/models/{model}", timeout=timeout, headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        return str(response.json().get("version")) if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None


def list_endpoints(home: Path, model: str | None = None, ask_version: bool = True) -> list[Endpoint]:
    """Every recorded endpoint of this home (of `model` only, when given), by model and port."""
    found = []
    for path in sorted(records_folder(home).glob("*.json")) if records_folder(home).exists() else []:
        try:
            record = json.loads(path.read_text())
            if model is not None and record["model"] != model:
                continue
            state = _state(record)
            endpoint = Endpoint(
                record["model"],
                record.get("host", "127.0.0.1"),
                int(record["port"]),
                int(record["pid"]),
                state,
                None,
                record.get("started_at", ""),
                str(path),
                record.get("scheme", "http"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or foreign file
        if ask_version and endpoint.alive:
            endpoint.version = served_version(endpoint.url, endpoint.model)
        found.append(endpoint)
    return found


@dataclass
class Stopped:
    endpoint: Endpoint
    outcome: str  # "stopped", or why nothing was signalled ("stale record removed: ...")


def stop_endpoints(home: Path, model: str, port: int | None = None, timeout: float = 15.0) -> list[Stopped]:
    """Stop `model`'s recorded endpoints (only the one on `port`, when given): SIGTERM to the server's process
    group (its own session, as deploys start it), SIGKILL after `timeout`; stale records are removed.
    Raises EndpointError when no record matches."""
    endpoints = [e for e in list_endpoints(home, model, ask_version=True) if port is None or e.port == port]
    if not endpoints:
        where = f" on port {port}" if port is not None else ""
        known = sorted({e.model for e in list_endpoints(home, ask_version=False)})
        raise EndpointError(
            f"no endpoint of {model!r}{where} was started from {home}"
            + (f" (recorded: {', '.join(known)})" if known else "")
        )
    results = []
    for endpoint in endpoints:
        if endpoint.alive:
            _terminate(endpoint, timeout)
            outcome = "stopped"
        elif endpoint.state == DEAD:
            outcome = "stale record removed: the process had already exited"
        else:
            outcome = f"stale record removed: pid {endpoint.pid} now belongs to another process, which was left alone"
        Path(endpoint.record).unlink(missing_ok=True)
        _forget_pid_file(home, endpoint)
        results.append(Stopped(endpoint, outcome))
    return results


def _terminate(endpoint: Endpoint, timeout: float) -> None:
    pid = endpoint.pid
    try:
        group = os.getpgid(pid) == pid  # a session of its own: the server and anything it started
    except ProcessLookupError:
        return
    kill: Callable[[int], None] = (lambda sig: os.killpg(pid, sig)) if group else (lambda sig: os.kill(pid, sig))
    try:
        kill(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.1)
    try:
        kill(signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    if _running(pid):
        raise EndpointError(f"pid {pid} ({endpoint.model} on port {endpoint.port}) did not stop")


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (a child of ours that exited but was not reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_pid_file(home: Path, endpoint: Endpoint) -> None:
    """The deploy's `<model>.pid` file, when it names the same process."""
    pid_file = Path(home) / "serving" / f"{endpoint.model}.pid"
    try:
        if int(pid_file.read_text()) == endpoint.pid:
            pid_file.unlink()
    except (OSError, ValueError):
        pass


__all__ = [
    "ALIVE",
    "DEAD",
    "REUSED",
    "Endpoint",
    "EndpointError",
    "Stopped",
    "forget_endpoint",
    "is_serving_process",
    "list_endpoints",
    "record_endpoint",
    "records_folder",
    "served_version",
    "stop_endpoints",
]
