"""Shared fixtures: a temporary platform home (and Dagster instance) per test, real specs and real data."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from ml_platform.spec import BUNDLED_SPECS, ModelSpec, load_spec

FLIGHT_SPEC = BUNDLED_SPECS / "flight_delay.yaml"

# Test processes share the cores (xdist workers, servers, runs): OpenMP threads that spin while they wait for
# work (libgomp's default) take a core from every other process; LightGBM trained 4-20x slower that way here.
# Set before LightGBM loads OpenMP, and inherited by every process a test starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ML_PLATFORM_HOME (storage, pinned replays) for one test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("ML_PLATFORM_HOME", str(path))
    monkeypatch.delenv("ML_PLATFORM_STORAGE", raising=False)
    return path


@pytest.fixture
def instance(tmp_path: Path):
    """A real Dagster instance (SQLite storage) in a temporary DAGSTER_HOME."""
    from dagster import DagsterInstance

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with DagsterInstance.local_temp(str(dagster_home)) as dagster_instance:
        yield dagster_instance


@pytest.fixture
def flight_spec() -> ModelSpec:
    return load_spec(FLIGHT_SPEC)


def _write_spec(
    folder: Path,
    overrides: dict | None = None,
    drop: tuple[str, ...] = (),
    name: str = "spec.yaml",
    base: Path = FLIGHT_SPEC,
) -> Path:
    """A copy of a spec with fields replaced (dotted keys) or dropped, written to `folder/name`."""
    data = yaml.safe_load(base.read_text())
    for dotted, value in (overrides or {}).items():
        node, *path, last = [data, *dotted.split(".")]
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    for dotted in drop:
        node, *path, last = [data, *dotted.split(".")]
        for part in path:
            node = node[part]
        node.pop(last)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


@pytest.fixture
def write_spec():
    """`write_spec(folder, {"dotted.field": value}, drop=("field",))`: a modified copy of flight_delay.yaml."""
    return _write_spec


@pytest.fixture
def replay_day():
    """`replay_day(offset_weeks, date(2013, 6, 12))`: the partition key of a 2013 day under a replay offset."""
    return lambda offset_weeks, source_day: (source_day + timedelta(weeks=offset_weeks)).isoformat()


@pytest.fixture
def webhook():
    """A local HTTP receiver for alerts on 127.0.0.1; yields (url, the JSON payloads received)."""
    import http.server
    import json
    import threading

    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()


@pytest.fixture
def make_dev(tmp_path):
    """`make_dev(port, env, *make_args)` starts the README's `make dev` in its own process group; all are ended
    after."""
    import os
    import signal
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    started = []

    def start(port: int, env: dict, *make_args: str) -> subprocess.Popen:
        log = (tmp_path / f"dagster_dev_{port}.log").open("w")
        # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; an earlier test's store must not leak in
        env = {k: v for k, v in env.items() if k != "DAGSTER_HOME" and not k.startswith("MLFLOW_")}
        process = subprocess.Popen(
            ["make", "--no-print-directory", "dev", f"PORT={port}", *make_args],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_path = tmp_path / f"dagster_dev_{port}.log"
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        log.close()


# Modules that share one Docker engine and build the project image: one worker runs them, one after the other.
_DOCKER_MODULES = ("ml_platform_tests/test_docker.py", "ml_platform_tests/stack/")
# The longest groups (minutes each, from `--durations`) start first, so the run does not end waiting on one.
_LONGEST_FIRST = (
    "docker",
    "ml_platform_tests/test_closed_loop.py",
    "ml_platform_tests/defs/training/test_dask_engine.py",
    "ml_platform_tests/defs/training/test_training_layer.py",
    "review",  # the review modules' group (xdist_group): a champion trained, then candidates beside it
    "ml_platform_tests/serving/test_portable_model.py",  # pip installs a model's requirements in a new venv
    "ml_platform_tests/ui/test_dagster_ui.py",
    "ml_platform_tests/ui/test_many_models_ui.py",
    "ml_platform_tests/serving/test_reliability.py",
    "ml_platform_tests/serving/test_app.py",
    "ml_platform_tests/defs/training/test_noop_retrain.py",
    "ml_platform_tests/test_make_dev.py",
    "ml_platform_tests/serving/test_registry_outage.py",
)


def _group(item: pytest.Item) -> str:
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
    path = item.nodeid.split("::")[0]
    return "docker" if path.startswith(_DOCKER_MODULES) else path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs `-n 3 --dist loadgroup`), a module's tests stay on one worker: they
    share its module fixtures (a trained model, a started server, a materialized graph), which would otherwise
    be built once per worker. The Docker modules share one group. The longest groups go first."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(_group(item)))
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker under `--dist loadgroup`, every test must carry its group in its node id (xdist appends
    `@group`): a pytest or xdist release that drops it silently spreads each module over every worker, so shared
    module fixtures (trained models, servers, `dagster dev`) are built once per worker and grouped tests race."""
    if not getattr(session.config.option, "loadgroup", False):  # set on xdist workers only
        return
    ungrouped = [item.nodeid for item in session.items if "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(
            f"--dist loadgroup is not grouping tests ({len(ungrouped)} without a group, e.g. {ungrouped[0]}): "
            f"pytest {pytest.__version__} and pytest-xdist disagree on node ids; see pyproject.toml's pytest pin"
        )
