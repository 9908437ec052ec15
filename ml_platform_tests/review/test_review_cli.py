"""`ml-platform review` from the command line against a real production home (champion v1 from a real retrain):
the verdict as exit status (0 the gates would pass, 1 one would fail, 3 production unreachable), the Markdown
with the metrics side by side and the plots it links, and the JSON saying the same."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from ml_platform.cli import main
from ml_platform.review import report
from ml_platform_tests.conftest import _write_spec
from ml_platform_tests.review.conftest import FAST, Production

# One worker for the review modules: they share the session's production home (a trained champion).
pytestmark = pytest.mark.xdist_group("review")


@pytest.fixture
def against(production: Production, monkeypatch, tmp_path):
    """`against(overrides)`: a head folder changed by `overrides` and the base folder (the champion's spec), with
    the environment pointing at production as a CI job's would."""
    monkeypatch.setenv("ML_PLATFORM_HOME", str(production.home))
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "ML_PLATFORM_STORAGE"):
        monkeypatch.delenv(variable, raising=False)

    def make(overrides: dict):
        head = tmp_path / "head"
        _write_spec(head, {**FAST, **overrides}, name="flight_delay.yaml", base=production.base)
        return production.spec_file.parent, head

    return make


def test_a_change_the_gates_would_pass_exits_0_with_the_report(against, tmp_path, capsys):
    base, head = against({"training.params.num_leaves": 15, "gates.max_regression": 1.0})
    outputs = ["--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")]
    code = main(
        ["review", "--base", str(base), "--head", str(head), *outputs, "--markdown", str(tmp_path / "review.md")]
    )
    assert code == report.PASSED, capsys.readouterr().err
    text = (tmp_path / "review.md").read_text()
    line = next(row for row in text.splitlines() if row.startswith("| `flight_delay` |"))
    assert "`training.params.num_leaves`" in line and "| would pass: roc_auc" in line
    assert "vs champion v1" in text and "| metric | champion | candidate | delta |" in text
    assert "| not_worse_than_champion | pass |" in text
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots and all(f"({name})" in text for name in plots)  # each PNG written is linked
    result = json.loads((tmp_path / "r.json").read_text())
    (model,) = result["models"]
    assert result["exit_code"] == 0 and model["candidate"]["champion_version"] == "1" and model["candidate"]["passed"]


def test_a_gate_that_would_fail_exits_1_naming_it(against, tmp_path, capsys):
    base, head = against({"training.params.num_leaves": 15, "gates.min": 0.99})
    code = main(["review", "--base", str(base), "--head", str(head)])
    out = capsys.readouterr().out
    assert code == report.GATE_FAILED
    assert "would FAIL" in out and "| metric_floor | **FAIL** |" in out


def test_production_unreachable_exits_3_naming_it(against, monkeypatch, capsys):
    base, head = against({"training.params.num_leaves": 15})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    code = main(["review", "--base", str(base), "--head", str(head)])
    captured = capsys.readouterr()
    assert code == report.UNREACHABLE
    assert f"127.0.0.1:{port}" in captured.err and "Production could not be reached" in captured.out
    assert "| not judged: production unreachable |" in captured.out


def test_a_tracking_server_over_http_is_read_like_a_local_store(against, production, monkeypatch, tmp_path, capsys):
    """The registry behind `mlflow server` (a copy of production's store, so the server's own bookkeeping stays
    off the shared one): the review reads it over HTTP with MLflow's retry settings, as CI reads production."""
    from ml_platform_tests.waiting import free_port, stop_server, tracking_server

    base, head = against({"training.params.num_leaves": 15, "gates.max_regression": 1.0})
    store = tmp_path / "store"
    shutil.copytree(production.home / "mlflow", store)
    port = free_port()
    server = tracking_server(f"sqlite:///{store / 'mlflow.db'}", port, tmp_path / "mlflow.log")
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("ML_PLATFORM_STORAGE", production.storage)
        code = main(["review", "--base", str(base), "--head", str(head), "--json", str(tmp_path / "r.json")])
    finally:
        stop_server(server)
    assert code == report.PASSED, capsys.readouterr().out[-3000:]
    (model,) = json.loads((tmp_path / "r.json").read_text())["models"]
    assert model["candidate"]["champion_version"] == "1"
