"""`ml-platform review`'s change tracking, report and exit codes, on real spec folders and a real git history:
which models change, the fields (old → new), derived-feature functions whose source changed, what the merge
rebuilds; a review that changes nothing ends fast without reading production; bad input gets exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from ml_platform.cli import main
from ml_platform.core.recipe import working_tree
from ml_platform.review import report
from ml_platform.review.changes import compare
from ml_platform.spec import load_spec
from ml_platform_tests.git_repos import git


def _review(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["review", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def folders(tmp_path, write_spec):
    """`base/` and `head/` with the same spec; tests then change the head."""
    for side in ("base", "head"):
        write_spec(tmp_path / side, name="flight_delay.yaml")
    return tmp_path / "base", tmp_path / "head"


def test_nothing_changed_ends_fast_without_reading_production(folders, tmp_path):
    base, head = folders
    probe = textwrap.dedent(
        f"""
        import sys, time
        start = time.perf_counter()
        from ml_platform.cli import main
        code = main(["review", "--base", {str(base)!r}, "--head", {str(head)!r}, "--json", {str(tmp_path / "r.json")!r}])
        print("RESULT", code, round(time.perf_counter() - start, 2), "mlflow" in sys.modules, "dagster" in sys.modules)
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens: it must not be read
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    code, seconds, mlflow, dagster = done.stdout.split("RESULT")[1].split()
    assert code == "0" and mlflow == "False" and dagster == "False"
    assert float(seconds) < 3.0  # the goal for a review that changes nothing
    assert "Nothing model-relevant changed" in done.stdout
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == 0


def test_changed_fields_old_to_new_and_what_the_merge_rebuilds(folders, write_spec, capsys, tmp_path):
    base, head = folders
    write_spec(head, {"training.params.num_leaves": 31, "gates.min": 0.66}, name="flight_delay.yaml")
    write_spec(head, {"name": "flight_origin", "serving.port": 8091}, name="flight_origin.yaml")
    write_spec(base, {"name": "retired", "serving.port": 8092}, name="retired.yaml")
    code, out, _ = _review(capsys, "--base", str(base), "--head", str(head), "--changes-only")
    assert code == report.PASSED
    assert "| `training.params.num_leaves` | `63` | `31` |" in out and "| `gates.min` | `0.65` | `0.66` |" in out
    assert "| `flight_origin` | added |" in out and "| `retired` | removed |" in out
    assert "code version only" in out and "next retrain: a new version, gated" in out
    assert "not judged: no candidate trained (--changes-only)" in out


def test_a_schedule_change_rebuilds_nothing_and_needs_no_candidate(folders, write_spec):
    base, head = folders
    write_spec(head, {"schedule": {"minute": 7}}, name="flight_delay.yaml")
    changes = compare(
        [load_spec(base / "flight_delay.yaml")],
        [load_spec(head / "flight_delay.yaml")],
        read_base=working_tree,
        read_head=working_tree,
    )
    (change,) = changes.models
    assert change.kind == "changed" and [f.path for f in change.fields] == ["schedule.minute"]
    assert change.rebuilds == () and not change.needs_candidate and changes.candidates == ()


def test_a_data_layer_change_calls_for_a_backfill_of_the_stored_days(folders, write_spec, capsys, tmp_path):
    base, head = folders
    write_spec(head, {"expectations.min_rows": 400}, name="flight_delay.yaml")
    storage = tmp_path / "storage" / "flight_delay" / "features"
    storage.mkdir(parents=True)
    for day in range(3):
        (storage / f"2013-06-0{day + 1}.parquet").write_bytes(b"")
    os.environ["ML_PLATFORM_STORAGE"] = str(tmp_path / "storage")
    try:
        code, out, _ = _review(capsys, "--base", str(base), "--head", str(head), "--changes-only")
    finally:
        del os.environ["ML_PLATFORM_STORAGE"]
    assert code == 0
    assert "the 3 stored days were built by the old spec: backfill them to rebuild" in out


def test_base_ref_reads_the_specs_and_the_derived_functions_from_git(tmp_path, write_spec, capsys, monkeypatch):
    """A derived-feature function whose body changed, the spec untouched: a change of the data layer."""
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    module = repo / "team_features.py"
    module.write_text("def hour(frame, timestamp):\n    return frame[timestamp].dt.hour\n")
    derived = [
        {"name": "day_of_week", "function": "ml_platform.core.derived:day_of_week", "type": "numeric"},
        {"name": "month", "function": "ml_platform.core.derived:month", "type": "numeric"},
        {"name": "hour", "function": "team_features:hour", "type": "numeric"},
    ]
    write_spec(repo / "specs", {"features.derived": derived}, name="flight_delay.yaml")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    module.write_text("def hour(frame, timestamp):\n    return (frame[timestamp].dt.hour + 1) % 24\n")
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.delitem(sys.modules, "team_features", raising=False)  # another test's module of that name

    code, out, err = _review(capsys, "--base-ref", "HEAD", "--head", str(repo / "specs"), "--changes-only")
    assert code == 0, err
    assert "`team_features:hour` (source)" in out and "backfill them to rebuild" in out, out
    assert "core.derived" not in out  # functions of installed packages are the same code on both sides

    code, _, err = _review(capsys, "--base-ref", "no-such-ref", "--head", str(repo / "specs"))
    assert code == report.SPEC_ERROR and "no-such-ref" in err


def test_a_head_spec_that_fails_check_is_exit_2_with_checks_message(folders, write_spec, capsys):
    base, head = folders
    broken = write_spec(head, {"training.window_days": "a month"}, name="flight_delay.yaml")
    started = time.perf_counter()
    code, out, err = _review(capsys, "--base", str(base), "--head", str(head))
    assert code == report.SPEC_ERROR and out == ""
    assert str(broken) in err and "training.window_days" in err
    assert time.perf_counter() - started < 5
