"""`ml-platform check`: ok per valid spec, errors on stderr with exit status 1, deprecations as warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ml_platform.cli import main as cli_main
from ml_platform.spec import BUNDLED_SPECS


def test_check_command(tmp_path, write_spec, capsys):
    assert cli_main(["check"]) == 0
    assert "ok" in capsys.readouterr().out
    good = write_spec(tmp_path / "specs", name="good.yaml")
    bad = write_spec(tmp_path / "specs", {"name": "bad_one", "partitions.cadence": "hourlyish"}, name="bad.yaml")
    assert cli_main(["check", str(tmp_path / "specs")]) == 1
    captured = capsys.readouterr()
    assert str(good) in captured.out
    assert str(bad) in captured.err and "partitions.cadence" in captured.err


def test_check_warns_about_a_deprecated_field_and_passes(tmp_path, write_spec, capsys):
    old = write_spec(tmp_path, {"serving.rollout": {"mode": "shadow", "window_days": 2}}, name="old.yaml")
    assert cli_main(["check", str(old)]) == 0
    captured = capsys.readouterr()
    assert f"ok  {old}" in captured.out
    assert f"{old}: serving.rollout.window_days is deprecated: rename it to serving.rollout.trial_days" in captured.err
    assert cli_main(["check"]) == 0
    assert "deprecated" not in capsys.readouterr().err


def test_check_command_rejects_both_names(tmp_path, write_spec, capsys):
    both = write_spec(tmp_path, {"serving.rollout": {"window_days": 2, "trial_days": 2}}, name="both.yaml")
    assert cli_main(["check", str(both)]) == 1
    err = capsys.readouterr().err
    assert str(both) in err and "serving.rollout" in err and "window_days" in err


def test_check_console_script_runs_without_dagster(tmp_path):
    """The console script validates specs, also against their data, and never imports Dagster (it must start
    fast)."""
    code = (
        "import sys; from ml_platform.cli import main; rc = main(['check', *sys.argv[2:], sys.argv[1]]); "
        "assert 'dagster' not in sys.modules, 'the CLI imported dagster'; sys.exit(rc)"
    )
    for options, said in (([], "flight_delay"), (["--data", "--rows", "200"], "data: 200 rows")):
        command = [sys.executable, "-c", code, str(BUNDLED_SPECS), *options]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert said in result.stdout
    script = Path(sys.executable).parent / "ml-platform"
    if script.exists():
        result = subprocess.run([str(script), "check", str(tmp_path / "none")], capture_output=True, text=True)
        assert result.returncode == 1 and "does not exist" in result.stderr


def test_check_refuses_specs_that_cannot_train(tmp_path, write_spec, capsys):
    short = write_spec(
        tmp_path,
        {
            "source": {"kind": "files", "path": "/data/{date}.csv"},
            "partitions.start": "2024-01-01",
            "partitions.end": "2024-02-20",
        },
        name="short.yaml",
    )
    monthly = write_spec(tmp_path, {"partitions.cadence": "monthly"}, name="monthly.yaml")
    assert cli_main(["check", str(short)]) == 1
    err = capsys.readouterr().err
    assert str(short) in err and "training.window_days: found 56" in err and "the 50 days from 2024-01-01" in err
    assert "set partitions.end to 2024-02-26 or later" in err
    assert cli_main(["check", str(monthly)]) == 1
    err = capsys.readouterr().err
    assert str(monthly) in err and "partitions.cadence: found 'monthly'" in err


def test_check_refuses_a_multiclass_target_that_yields_booleans(tmp_path, write_spec, capsys):
    multiclass = {"task": "multiclass", "gates.metric": "macro_f1", "monitoring.performance.metric": "macro_f1"}
    trap = write_spec(
        tmp_path, {**multiclass, "target.expression": "(arr_delay > 15) + (arr_delay > 60)"}, name="trap.yaml"
    )
    counted = write_spec(
        tmp_path,
        {**multiclass, "target.expression": "(arr_delay > 15) * 1 + (arr_delay > 60) * 1"},
        name="counted.yaml",
    )
    assert cli_main(["check", str(trap)]) == 1
    err = capsys.readouterr().err
    assert str(trap) in err and "target.expression: found '(arr_delay > 15) + (arr_delay > 60)'" in err
    assert "logical OR" in err and "(arr_delay > 15) * 1 + (arr_delay > 60) * 1" in err
    assert cli_main(["check", str(counted)]) == 0
    assert f"ok  {counted}" in capsys.readouterr().out


def test_check_names_a_class_or_positive_that_is_no_label_once(tmp_path, write_spec, capsys):
    multiclass = {
        "task": "multiclass",
        "gates.metric": "macro_f1",
        "monitoring.performance.metric": "macro_f1",
        "target": {"column": "origin", "classes": ["EWR", ["JFK"], 1.5]},
    }
    binary = {"target": {"column": "origin", "positive": {"a": 1}}}
    for overrides, field in ((multiclass, "target.classes[1]"), (binary, "target.positive")):
        spec = write_spec(tmp_path, overrides)
        assert cli_main(["check", str(spec)]) == 1
        err = capsys.readouterr().err
        assert f"  {field}: found" in err and "allowed: a class label: text (quoted" in err
        assert ".str:" not in err and ".int:" not in err and ".bool:" not in err  # one line per bad value
