"""Retrains launched as the UI launches them: a fresh process that loads the code location and runs the steps
with the job's executor (in process, see ml_platform/defs/__init__.py), against a real DAGSTER_HOME, MLflow
store and registry. A failed step fails the run as it did under the multiprocess executor: the run fails, the
steps downstream never start, and the registry keeps its versions and aliases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ml_platform_tests.defs.helpers import _aliases, _client, _partitions, _versions

REPO = Path(__file__).resolve().parents[3]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
SELECTION = ",".join(f"flight_delay/{stage}" for stage in ("training_set", "model", "evaluation", "champion"))


def _launch(command: list[str], home: Path, specs: Path, dagster_home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ML_PLATFORM_HOME": str(home),
        "ML_PLATFORM_SPECS": str(specs),
    }
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(variable, None)
    return subprocess.run(
        [DAGSTER, *command, "-m", "ml_platform.definitions"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _last_run(dagster_home: Path) -> tuple[dg.DagsterRun, list]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs(limit=1)
        return run, [record.dagster_event for record in instance.all_logs(run.run_id) if record.dagster_event]


def _started(events: list) -> set[str]:
    return {e.step_key.split("__")[-1] for e in events if e.event_type_value == "STEP_START"}


def test_a_launched_retrain_runs_in_process_and_a_failed_step_fails_the_run(platform, tmp_path):
    make, home = platform
    partitions = _partitions(make())
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    specs = tmp_path / "specs"

    # The UI's "Materialize" on the four stages: the implicit asset job, with the Definitions' executor.
    done = _launch(
        ["asset", "materialize", "--select", SELECTION, "--partition", partitions[0]], home, specs, dagster_home
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run, events = _last_run(dagster_home)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    engine = [e.message for e in events if e.event_type_value == "ENGINE_EVENT"]
    assert any("Executing steps in process" in message for message in engine), engine
    assert not [e for e in events if e.event_type_value == "STEP_WORKER_STARTED"]  # no process per step
    assert _started(events) == {"training_set", "model", "evaluation", "champion"}
    assert _aliases(home) == {"champion": "1"}

    # The retrain job, launched for another week, whose training step fails.
    make({"training.params": {"num_leaves": -5}})
    done = _launch(
        ["job", "execute", "-j", "flight_delay_retrain", "--tags", json.dumps({"dagster/partition": partitions[1]})],
        home,
        specs,
        dagster_home,
    )
    assert done.returncode != 0
    run, events = _last_run(dagster_home)
    assert run.status == dg.DagsterRunStatus.FAILURE and run.tags["dagster/partition"] == partitions[1]
    (failure,) = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "flight_delay__model"
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "training.params" in message
    assert _started(events) == {"training_set", "model"}  # evaluation and champion never start
    assert [e.event_type for e in events if e.is_run_failure] == [dg.DagsterEventType.RUN_FAILURE]
    assert _aliases(home) == {"champion": "1"} and _versions(home) == ["1"]
    experiment = _client(home).get_experiment_by_name("ml_platform/flight_delay")
    statuses = sorted(r.info.status for r in _client(home).search_runs([experiment.experiment_id]))
    assert statuses == ["FAILED", "FINISHED"]
