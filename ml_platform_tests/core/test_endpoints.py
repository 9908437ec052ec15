"""Finding and stopping the local endpoints a home started, with real `ml-platform serve` processes on
127.0.0.1 over a real MLflow registry: listed with the version they serve, stopped by process group through
the CLI; stale records (process gone, pid reused by another process) are reported and never signalled."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from ml_platform.cli import main
from ml_platform.core.deploy import ensure_local_server, stop_local_server, wait_for_version
from ml_platform.core.endpoints import is_serving_process, list_endpoints, record_endpoint, records_folder
from ml_platform.core.registry import Registry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our child once it exits: reap it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def home(tmp_path, monkeypatch, spec, store, logged_version):
    """A platform home whose registry has `flight_delay` v1 as a gated champion; the store is the one the
    serving processes read (through MLFLOW_TRACKING_URI)."""
    client, _ = store
    version, _ = logged_version()
    registry = Registry(client, spec.name)
    registry.mark_gates(version, passed=True)
    registry.promote(version, "test setup", {})
    home = tmp_path / "home"
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("ML_PLATFORM_API_TOKEN", raising=False)
    yield home
    for record in records_folder(home).glob("*.json") if records_folder(home).exists() else []:
        pid = json.loads(record.read_text())["pid"]  # whatever a failed test left running (ours only)
        if is_serving_process(_cmdline(pid), "flight_delay"):
            os.killpg(pid, signal.SIGKILL)


def _cmdline(pid: int) -> list[str]:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode().rstrip("\0").split("\0")
    except OSError:
        return []


def test_a_deployed_endpoint_is_listed_and_stopped_by_the_cli(home, capsys):
    port = _free_port()
    url, pid = ensure_local_server("flight_delay", port, home, reload_interval=0.5)
    assert pid is not None
    wait_for_version(url, "flight_delay", "1", {})

    assert main(["endpoints", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["model"] == "flight_delay" and listed["version"] == "1" and listed["port"] == port
    assert listed["pid"] == pid and listed["alive"] is True and listed["url"] == url
    assert main(["endpoints"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["MODEL", "VERSION", "PORT", "PID", "STATE", "URL", "STARTED"]
    assert table[1].split()[:5] == ["flight_delay", "1", str(port), str(pid), "alive"]

    assert main(["stop", "--model", "flight_delay"]) == 0
    out = capsys.readouterr().out
    assert f"flight_delay v1 on {url} (pid {pid}): stopped" in out
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=2)
    assert list_endpoints(home) == [] and not (home / "serving" / "flight_delay.pid").exists()

    assert main(["stop", "--model", "flight_delay"]) == 1
    assert "no endpoint of 'flight_delay' was started from" in capsys.readouterr().err
    assert main(["endpoints"]) == 0 and "no endpoints started from" in capsys.readouterr().out


def test_a_server_stopped_on_its_own_removes_its_record(home, capsys):
    """SIGTERM from elsewhere (a terminal, a supervisor): the server shuts down and forgets its record."""
    port = _free_port()
    _url, pid = ensure_local_server("flight_delay", port, home, reload_interval=0.5)
    assert [e.pid for e in list_endpoints(home, "flight_delay")] == [pid]
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid) and list_endpoints(home) == []
    stop_local_server("flight_delay", home)  # nothing left to stop: no error


def test_stale_records_are_reported_and_no_other_process_is_signalled(home, capsys):
    # A record whose process has exited.
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    record_endpoint(home, "flight_delay", "127.0.0.1", 18001, pid=os.getpid())
    dead = records_folder(home) / "flight_delay-18001.json"
    dead.write_text(json.dumps({**json.loads(dead.read_text()), "pid": exited.pid}))
    # A record whose pid now belongs to an unrelated process (here: a `sleep` in its own session).
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        reused = records_folder(home) / "flight_delay-18002.json"
        reused.write_text(
            json.dumps(
                {
                    "model": "flight_delay",
                    "host": "127.0.0.1",
                    "port": 18002,
                    "pid": bystander.pid,
                    "proc_start": "1",
                    "started_at": "then",
                }
            )
        )
        states = {e.port: (e.state, e.version, e.alive) for e in list_endpoints(home)}
        assert states == {18001: ("dead", None, False), 18002: ("pid reused", None, False)}

        assert main(["stop", "--model", "flight_delay"]) == 1
        captured = capsys.readouterr()
        assert f"(pid {exited.pid}): stale record removed: the process had already exited" in captured.out
        assert f"pid {bystander.pid} now belongs to another process, which was left alone" in captured.out
        assert "no running endpoint of 'flight_delay'" in captured.err
        assert bystander.poll() is None  # never signalled
        assert list_endpoints(home) == []
    finally:
        bystander.kill()
        bystander.wait()


def test_only_a_platform_server_of_the_model_is_recognised():
    assert is_serving_process([sys.executable, "-m", "ml_platform.cli", "serve", "--model", "m", "--port", "1"], "m")
    assert is_serving_process(["/venv/bin/python", "/venv/bin/ml-platform", "serve", "--model=m"], "m")
    assert not is_serving_process([sys.executable, "-m", "ml_platform.cli", "serve", "--model", "other"], "m")
    assert not is_serving_process([sys.executable, "-m", "ml_platform.cli", "simulate", "--model", "m"], "m")
    assert not is_serving_process(["sleep", "60"], "m")
