"""The browser tests' world: a small materialized flight_delay graph, the real `dagster dev` serving it, and
headless Chromium driving the UI through Playwright.

Once per session, `small_graph.py` materializes 15 days of data, one training week (evaluation with its four
gates, champion) and one drift day into a temporary ML_PLATFORM_HOME; per test module, `dagster dev` (webserver and
daemon, workspace.yaml at the repo root) serves that same Dagster home on a free port of 127.0.0.1, in its own
process group, which is ended as a whole after the module.

Chromium is Debian's `chromium` (`apt-get install chromium`; `.ci/run` installs it): $ML_PLATFORM_CHROMIUM when
set, else /usr/bin/chromium or one on PATH; Playwright's own browser download is not used. Without
Chromium the tests skip, loudly; with ML_PLATFORM_REQUIRE_UI=1 (set by `.ci/run`) they fail instead.

On a failure, a full-page screenshot of the test's page and the tail of the `dagster dev` log are saved in
`test-artifacts/ui/` at the repo root (git-ignored), named after the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
BUILDER = Path(__file__).with_name("small_graph.py")
STARTUP_S = 240


def _chromium() -> str | None:
    """$ML_PLATFORM_CHROMIUM when set (and nothing else then), else Debian's /usr/bin/chromium or one on PATH."""
    chosen = os.environ.get("ML_PLATFORM_CHROMIUM")
    candidates = (
        [chosen] if chosen else ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    )
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict:
    """The session's environment without an earlier test's Dagster, MLflow or platform settings."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith(("MLFLOW_", "ML_PLATFORM_"))}
    return {**env, **extra}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether their test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


NO_CHROMIUM = (
    "DAGSTER UI TESTS NOT RUN: no Chromium found ($ML_PLATFORM_CHROMIUM, /usr/bin/chromium, PATH). "
    "Install Debian's package: `apt-get install -y chromium` (.ci/run does)."
)
_skipped_for_chromium: list[str] = []


def pytest_terminal_summary(terminalreporter):
    """Skipped UI tests are easy to miss among dots: say it once more, last, in red."""
    if _skipped_for_chromium:
        terminalreporter.write_sep("!", NO_CHROMIUM, red=True, bold=True)


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _chromium()
    if found is None:
        if os.environ.get("ML_PLATFORM_REQUIRE_UI") == "1":
            pytest.fail(f"{NO_CHROMIUM} ML_PLATFORM_REQUIRE_UI=1 requires them.")
        _skipped_for_chromium.append(NO_CHROMIUM)
        pytest.skip(f"!!! {NO_CHROMIUM} !!!")
    return found


@pytest.fixture(scope="session")
def small_graph(chromium, tmp_path_factory) -> tuple[Path, dict]:
    """The materialized graph's folder and the facts `small_graph.py` printed about it."""
    root = tmp_path_factory.mktemp("ui_graph")
    result = subprocess.run(
        [sys.executable, str(BUILDER), str(root), str(_free_port())],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"materializing the small graph failed:\n{result.stderr[-5000:]}"
    return root, json.loads(result.stdout.strip().splitlines()[-1])


class DagsterDev:
    def __init__(self, url: str, log: Path, facts: dict):
        self.url, self.log, self.facts = url, log, facts

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@pytest.fixture(scope="module")
def dagster_dev(small_graph) -> DagsterDev:
    """`dagster dev` on the small graph's Dagster home, up with its code location loaded; per module, so its
    webserver and daemon do not keep running through the rest of a `make test` session."""
    root, facts = small_graph
    with served(root / "specs", root / "home", root / "dagster_dev.log", facts) as server:
        yield server


@contextlib.contextmanager
def served(specs: Path, home: Path, log_path: Path, facts: dict) -> Iterator[DagsterDev]:
    """`dagster dev` (workspace.yaml at the repo root) over the specs folder, Dagster's home in `home/dagster`,
    on a free port of 127.0.0.1 in its own process group; up with its code location loaded, ended as a whole."""
    port = _free_port()
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    env = _clean_env(ML_PLATFORM_HOME=str(home), ML_PLATFORM_SPECS=str(specs), DAGSTER_HOME=str(home / "dagster"))
    server = DagsterDev(f"http://127.0.0.1:{port}", log_path, facts)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster")),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_served(server, process)
            yield server
        finally:
            _end_group(process)
            # nothing here deploys an endpoint, but should the daemon have, it runs in its own session
            for pid_file in (home / "serving").glob("*.pid") if (home / "serving").exists() else []:
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def _end_group(process: subprocess.Popen) -> None:
    """End `dagster dev` and everything it started (webserver, daemon, code servers, run workers): it can
    outlive SIGTERM without a terminal, so the whole process group gets SIGKILL after a short grace."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=3)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _wait_until_served(server: DagsterDev, process: subprocess.Popen) -> None:
    query = {"query": "{ assetNodes { assetKey { path } } }"}
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster dev exited:\n{server.log_tail()}"
        try:
            nodes = requests.post(f"{server.url}/graphql", json=query, timeout=10).json()
            if nodes.get("data", {}).get("assetNodes"):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not serve the code location within {STARTUP_S} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def browser(chromium):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: `pip install -e '.[test]'` (or `make install-test`)")
    playwright = sync_playwright().start()
    try:
        # root in containers and CI: no user namespace for the sandbox, and a small /dev/shm
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, dagster_dev, request):
    """A fresh page at 1600×1000; the community dialog is skipped whenever it shows; on failure a screenshot
    and the `dagster dev` log tail go to test-artifacts/ui/<test>.png|.log."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dagster_dev.url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)  # two shared cores: a GraphQL answer can take seconds
    skip = page.get_by_role("dialog").filter(has_text="Join the Dagster community").get_by_role("button", name="Skip")
    page.add_locator_handler(skip, lambda button: button.click())
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_")
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as error:  # the page may be what broke; the log still helps
            (ARTIFACTS / f"{name}.screenshot-error.txt").write_text(repr(error))
        (ARTIFACTS / f"{name}.log").write_text(f"{page.url}\n\n{dagster_dev.log_tail(20000)}")
    context.close()
