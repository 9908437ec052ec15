"""The benchmark guard's comparison (benchmarks/guard.py): figure lines as the benchmarks print them, against a
baseline; and its check that nothing a benchmark started still listens once it has exited, on two tiny fake
benchmarks (no real benchmark is run here)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

GUARD_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "guard.py"
_spec = importlib.util.spec_from_file_location("benchmark_guard", GUARD_FILE)
assert _spec is not None and _spec.loader is not None
guard = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = guard  # its dataclasses look their module up
_spec.loader.exec_module(guard)

SERVING_OUTPUT = "\n".join(
    [
        json.dumps({"step": "model", "version": "1", "best_iteration": 87, "features": 18}),
        "some library's warning on stdout",
        json.dumps(
            {
                "figure": "serving_rps_ratio_vs_mlflow",
                "value": 2950.0,
                "unit": "requests/s",
                "peer": "mlflow models serve",
                "peer_value": 160.2,
                "ratio": 18.41,
                "better": "higher",
                "goal": 10,
                "met": True,
            }
        ),
        json.dumps(
            {
                "figure": "serving_p99_ms",
                "value": 4.1,
                "unit": "ms",
                "peer": "mlflow models serve p99",
                "peer_value": 60.3,
                "ratio": 0.068,
                "better": "lower",
                "goal": 10,
                "met": True,
            }
        ),
    ]
)
LABEL_FIELDS_OUTPUT = "\n".join(
    json.dumps(
        {
            "figure": "label_fields_us",
            "case": case,
            "value": value,
            "unit": "us",
            "peer": "predict_records",
            "peer_value": 40.0,
            "ratio": value / 40.0,
            "better": "lower",
            "goal": 0.1,
            "met": True,
        }
    )
    for case, value in (("binary/1", 1.2), ("multiclass/100", 3.0))
)
TRAINING_FIXED_COST = json.dumps(
    {
        "figure": "retrain_fixed_cost_s",
        "value": 0.4,
        "unit": "s",
        "peer": "plain script",
        "peer_value": 3.0,
        "ratio": 0.133,
        "better": "lower",
        "goal": 1.0,
        "met": True,
        "guard": False,
    }
)


def baseline(**figures: tuple[float, str, str]) -> dict:
    return {name: {"ratio": r, "better": better, "benchmark": bench} for name, (r, better, bench) in figures.items()}


def test_figure_lines_are_parsed_and_keyed_by_case():
    figures = guard.parse_figures("label_fields.py", LABEL_FIELDS_OUTPUT) + guard.parse_figures(
        "serving.py", SERVING_OUTPUT
    )
    assert {f.key: (f.ratio, f.better) for f in figures} == {
        "label_fields_us/binary/1": (0.03, "lower"),
        "label_fields_us/multiclass/100": (0.075, "lower"),
        "serving_rps_ratio_vs_mlflow": (18.41, "higher"),
        "serving_p99_ms": (0.068, "lower"),
    }
    assert guard.parse_figures("training.py", TRAINING_FIXED_COST) == []  # marked unguarded


def test_within_twice_the_baseline_passes_either_way():
    stored = baseline(
        serving_rps_ratio_vs_mlflow=(30.0, "higher", "serving.py"), serving_p99_ms=(0.04, "lower", "serving.py")
    )
    verdicts = guard.compare(stored, guard.parse_figures("serving.py", SERVING_OUTPUT), {}, ["serving.py"])
    assert [(v.figure, v.ok) for v in verdicts] == [("serving_p99_ms", True), ("serving_rps_ratio_vs_mlflow", True)]
    assert verdicts[0].factor == pytest.approx(0.068 / 0.04, abs=1e-3)
    assert verdicts[1].factor == pytest.approx(30.0 / 18.41, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "stored_ratio", "better"),
    [("serving_rps_ratio_vs_mlflow", 40.0, "higher"), ("serving_p99_ms", 0.03, "lower")],
)
def test_more_than_twice_worse_fails(name, stored_ratio, better):
    verdicts = guard.compare(
        baseline(**{name: (stored_ratio, better, "serving.py")}),
        guard.parse_figures("serving.py", SERVING_OUTPUT),
        {},
        ["serving.py"],
    )
    failed = [v for v in verdicts if not v.ok]
    assert [v.figure for v in failed] == [name]
    assert failed[0].factor > guard.WORSE_FACTOR


def test_a_missing_figure_and_a_crash_fail():
    stored = baseline(
        serving_rps_ratio_vs_mlflow=(18.0, "higher", "serving.py"),
        **{"label_fields_us/binary/1": (0.03, "lower", "label_fields.py")},
    )
    crashed = {"label_fields.py": "exit code 1: Traceback ..."}
    verdicts = guard.compare(
        stored, guard.parse_figures("serving.py", SERVING_OUTPUT), crashed, ["serving.py", "label_fields.py"]
    )
    by_name = {v.figure: v for v in verdicts}
    assert not by_name["label_fields_us/binary/1"].ok
    assert "crashed" in by_name["label_fields_us/binary/1"].note
    assert not by_name["label_fields.py run"].ok
    assert by_name["serving_rps_ratio_vs_mlflow"].ok


def test_a_figure_new_to_the_baseline_passes_with_a_warning():
    verdicts = guard.compare({}, guard.parse_figures("serving.py", SERVING_OUTPUT), {}, ["serving.py"])
    assert all(v.ok and v.baseline is None and v.note.startswith("WARNING") for v in verdicts)
    assert len(verdicts) == 2


def test_figures_of_benchmarks_not_run_are_not_expected():
    stored = baseline(drift_1m_rows_s=(0.5, "lower", "monitoring.py"))
    assert guard.compare(stored, guard.parse_figures("serving.py", SERVING_OUTPUT), {}, ["serving.py"])[0].ok


def test_a_recorded_baseline_compares_clean_against_its_own_run():
    observed = guard.parse_figures("serving.py", SERVING_OUTPUT) + guard.parse_figures(
        "label_fields.py", LABEL_FIELDS_OUTPUT
    )
    verdicts = guard.compare(guard.recorded(observed), observed, {}, ["serving.py", "label_fields.py"])
    assert len(verdicts) == 4
    assert all(v.ok and v.factor == 1.0 for v in verdicts)


def test_a_second_attempt_keeps_each_figure_at_its_better_ratio():
    first = [guard.Observed("fast", "b.py", 3.0, "lower"), guard.Observed("rps", "b.py", 0.5, "higher")]
    second = [guard.Observed("fast", "b.py", 1.0, "lower"), guard.Observed("rps", "b.py", 0.2, "higher")]
    merged = {figure.key: figure.ratio for figure in guard.best_of(first, second)}
    assert merged == {"fast": 1.0, "rps": 0.5}
    baseline = {"fast": {"ratio": 0.9, "better": "lower", "benchmark": "b.py"}}
    # a regression that shows in both attempts still fails; one that showed once passes
    assert not guard.compare(baseline, guard.best_of(first, first), {}, ["b.py"])[0].ok
    assert guard.compare(baseline, guard.best_of(first, second), {}, ["b.py"])[0].ok


# A fake benchmark: starts a listener on 127.0.0.1 in a process of its own session (as the benchmarks start their
# servers), writes its port and pid beside itself (the guard keeps a benchmark's output), and either stops it before exiting (tidy) or leaves it behind (leaky).
FAKE_BENCHMARK = """
import json, pathlib, subprocess, sys
LISTEN = (
    "import socket, sys, time\\n"
    "sock = socket.socket()\\nsock.bind(('127.0.0.1', 0))\\nsock.listen()\\n"
    "print(sock.getsockname()[1], flush=True)\\ntime.sleep(120)\\n"
)
child = subprocess.Popen(
    [sys.executable, "-c", LISTEN], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    start_new_session=True,
)
port = int(child.stdout.readline())
pathlib.Path(__file__).with_suffix(".json").write_text(json.dumps({"port": port, "pid": child.pid}))
if TIDY:
    child.kill()
    child.wait()
"""


def test_a_benchmark_that_leaves_a_listener_fails_the_guard_naming_it_and_its_port(tmp_path, monkeypatch, capsys):
    for name, tidy in (("tidy.py", True), ("leaky.py", False)):
        (tmp_path / name).write_text(f"TIDY = {tidy}\n" + FAKE_BENCHMARK)
    monkeypatch.setattr(guard, "HERE", tmp_path)
    monkeypatch.setattr(guard, "BASELINE", tmp_path / "baseline.json")
    monkeypatch.setattr(guard, "GUARDED", ("tidy.py", "leaky.py"))
    monkeypatch.setattr(guard, "LEFTOVER_GRACE_S", 0.5)
    try:
        code = guard.main([])
    finally:
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        started = [json.loads(p.read_text()) for p in (tmp_path / "tidy.json", tmp_path / "leaky.json") if p.exists()]
        for line in started:  # the guard ends what was left; this only guards against a guard that did not
            with contextlib.suppress(ProcessLookupError):
                os.kill(line["pid"], signal.SIGKILL)
    verdicts = [line for line in lines if "figure" in line and "ok" in line]
    assert code == 1
    assert [(v["figure"], v["benchmark"], v["ok"]) for v in verdicts] == [("leaky.py leftovers", "leaky.py", False)]
    assert lines[-1]["failed"] == ["leaky.py leftovers"]
    assert len(started) == 2
    assert f"port {started[1]['port']} on 127.0.0.1 (pid {started[1]['pid']}:" in verdicts[0]["note"]
    for line in started:  # both ports are free again: the tidy one stopped its own, the guard ended the leak
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", line["port"]))
