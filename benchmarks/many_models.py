"""What a model costs when an instance holds many: loading the code location, starting a run, the idle daemon.

N copies of the bundled spec (distinct names and ports, the replay pinned: `contract.REPLAY_OFFSET_WEEKS`) in a
fresh specs folder and a fresh ML_PLATFORM_HOME / DAGSTER_HOME (the repository's dagster.yaml). Each measure is
taken in fresh processes, as Dagster takes them:

- `definitions_load_s` (case N specs): a new Python imports `ml_platform.definitions` and builds the repository
  snapshot a code server serves (every job, sensor and schedule resolved). Peer: the same at 1 spec.
- `run_start_extra_s_100`: the run worker of one raw partition of one model, started as Dagster's Docker and
  Kubernetes launchers start it (`dagster api execute_run`, the job named in DAGSTER_RUN_JOB_NAME, so the worker
  builds the run's model only); at 100 specs minus at 1 spec, alternated. Guarded as the ratio of the two.
  `run_start_extra_s_100_in_process` (full form, not guarded): the same run by `dagster asset materialize`, which
  loads the whole location, as a worker that is not told its run does (the embedded default's).
- `idle_daemon_cores_100`: CPU cores used by `dagster dev` as `make dev` runs it (the daemon, the code server and
  the webserver, no browser open) with 100 specs and nothing to do, over a window after a warm-up (sensors
  tick, schedules and automation evaluate). Peer: 1 spec.
- `sensors_per_model` and `schedules_at_same_minute` (at 100 specs): counts read off the loaded repository.

    python benchmarks/many_models.py [--quick]

`--quick` (the guard's form, about a minute): load at 1 and 100 specs and one run worker each; the idle daemon is
measured by the full form only (1, 10, 100, 300 specs; 3 runs each; a 240 s window after a 60 s warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import yaml
from contract import REPLAY_OFFSET_WEEKS, emit, figure, quick_option

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAY = "2013-06-03"  # the raw partition every run materializes (the pinned replay's calendar)
LOAD_GOALS_S = {100: 3.0, 300: 6.0}  # definitions_load_s by number of specs
RUN_START_EXTRA_GOAL_S = 1.0
IDLE_CORES_GOAL = 0.15

LOAD = """
import json, sys, time
start = time.perf_counter()
import ml_platform.definitions as location
imported = time.perf_counter()
from dagster._core.remote_representation.external_data import RepositorySnap
repository = location.defs.get_repository_def()
snap = RepositorySnap.from_def(repository)
done = time.perf_counter()
minutes = [s.cron_schedule.split()[:2] for s in repository.schedule_defs if isinstance(s.cron_schedule, str)]
print(json.dumps({"import_s": imported - start, "load_s": done - start, "sensors": len(repository.sensor_defs),
                  "schedules": len(repository.schedule_defs), "jobs": len(snap.job_datas or snap.job_refs or []),
                  "minutes": minutes}))
"""


def write_specs(folder: Path, count: int) -> Path:
    """`count` copies of the bundled spec, m000 …, each its own port, the replay pinned."""
    data = yaml.safe_load((REPO / "ml_platform" / "bundled_specs" / "flight_delay.yaml").read_text())
    data["source"]["offset_weeks"] = REPLAY_OFFSET_WEEKS
    folder.mkdir(parents=True)
    for i in range(count):
        copy = {**data, "name": f"m{i:03d}", "serving": {**data["serving"], "port": 21000 + i}}
        (folder / f"m{i:03d}.yaml").write_text(yaml.safe_dump(copy))
    return folder


def environment(scratch: Path, specs: Path) -> dict[str, str]:
    """A fresh home per specs folder; the repository's dagster.yaml in its DAGSTER_HOME."""
    home = scratch / f"home_{specs.name}"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_PLATFORM_", "DAGSTER_"))}
    return {**env, "ML_PLATFORM_HOME": str(home), "ML_PLATFORM_SPECS": str(specs), "DAGSTER_HOME": str(dagster_home)}


def load(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"loading the code location failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


# Setup, not timed: the run record a launcher would start (m000's raw partition DAY through the implicit asset job,
# as the UI's Materialize and the automation sensor make it), and the ARGS of its `dagster api execute_run`.
CREATE_RUN = """
import sys
from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._grpc.types import ExecuteRunArgs
from dagster_shared.serdes import serialize_value

recon = ReconstructableRepository.for_module(
    "ml_platform.definitions", "defs", working_directory=sys.argv[1]
).get_reconstructable_job("__ASSET_JOB")
key = AssetKey(["m000", "raw"])
job = recon.get_definition().get_subset(asset_selection={key})
origin = recon.get_python_origin()
with DagsterInstance.get() as instance:
    run = instance.create_run_for_job(
        job_def=job, job_code_origin=origin, tags={"dagster/partition": sys.argv[2]}, asset_selection=frozenset({key})
    )
    print(serialize_value(ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=instance.get_ref())))
"""


def run_worker(env: dict[str, str]) -> float:
    """Wall seconds of the run worker of m000's raw partition DAY, started as Dagster's Docker and Kubernetes
    launchers start it: `dagster api execute_run ARGS` with the run's job in DAGSTER_RUN_JOB_NAME."""
    created = _checked([sys.executable, "-c", CREATE_RUN, str(REPO), DAY], env)
    start = time.perf_counter()
    _checked(
        [str(BIN / "dagster"), "api", "execute_run", created.stdout.splitlines()[-1]],
        {**env, "DAGSTER_RUN_JOB_NAME": "__ASSET_JOB"},
    )
    return time.perf_counter() - start


def run_in_process(env: dict[str, str]) -> float:
    """Wall seconds of `dagster asset materialize` of m000's raw partition DAY: the whole location is loaded, as
    in a worker that is not told its run (the embedded default's, spawned by the code server)."""
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "ml_platform.definitions"]
    start = time.perf_counter()
    _checked([*command, "--select", "m000/raw", "--partition", DAY], env)
    return time.perf_counter() - start


def _checked(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return done


def idle_cores(env: dict[str, str], scratch: Path, warm_up: float, window: float) -> float:
    """CPU seconds per second of `dagster dev` as `make dev` runs it (its daemon, code server and webserver,
    no browser open), over `window` after `warm_up`."""
    workspace = scratch / "workspace.yaml"
    shutil.copy(REPO / "workspace.yaml", workspace)
    log = (scratch / f"daemon_{Path(env['ML_PLATFORM_SPECS']).name}.log").open("w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(_free_port())],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(warm_up)
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon stopped: see {log.name}")
        before, start = cpu_seconds(daemon.pid), time.perf_counter()
        time.sleep(window)
        after, elapsed = cpu_seconds(daemon.pid), time.perf_counter() - start
    finally:
        with_group(daemon, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with_group(daemon, signal.SIGKILL)
            daemon.wait(timeout=30)
        log.close()
    # a process alive in both samples counts its difference; one born in the window counts all it used
    used = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    return used / elapsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of the process and all its descendants, by pid."""
    root = psutil.Process(pid)
    found = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[process.pid] = times.user + times.system
    return found


def with_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def main() -> int:
    parser = argparse.ArgumentParser()
    quick_option(parser, "load at 1 and 100 specs and one run each; no idle daemon")
    args = parser.parse_args()
    counts = (1, 100) if args.quick else (1, 10, 100, 300)
    runs = 1 if args.quick else 3
    warm_up, window = 60.0, 240.0  # the window holds two automation evaluations at 100 specs (every 120 s)

    with tempfile.TemporaryDirectory(prefix="ml_platform_many_") as folder:
        scratch = Path(folder)
        envs = {n: environment(scratch, write_specs(scratch / f"specs_{n}", n)) for n in counts}
        loads = {}
        for n in counts:
            loads[n] = load(envs[n])
            emit(
                step="load",
                specs=n,
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in loads[n].items() if k != "minutes"},
            )
        for n in counts[1:]:
            goal = LOAD_GOALS_S.get(n)
            figure(
                "definitions_load_s",
                case=f"{n} specs",
                value=loads[n]["load_s"],
                unit="s",
                peer="the same load at 1 spec, same run",
                peer_value=loads[1]["load_s"],
                better="lower",
                goal=f"<= {goal} s" if goal else None,
                met=loads[n]["load_s"] <= goal if goal else None,
                import_s=round(loads[n]["import_s"], 3),
                peer_import_s=round(loads[1]["import_s"], 3),
            )
        figure(
            "definitions_import_s",
            value=loads[1]["import_s"],
            unit="s",
            peer="the whole load (import + repository snapshot) at 1 spec",
            peer_value=loads[1]["load_s"],
            better="lower",
            goal="<= 1.5 s",
            met=loads[1]["import_s"] <= 1.5,
            guarded=False,
        )
        at_100 = loads[100]
        sensors_per_model = (at_100["sensors"] - loads[1]["sensors"]) / 99
        same_minute = max(Counter(tuple(m) for m in at_100["minutes"]).values(), default=0)
        emit(
            figure="sensors_per_model",
            value=round(sensors_per_model, 3),
            sensors_at_1=loads[1]["sensors"],
            sensors_at_100=at_100["sensors"],
            goal=0,
            met=sensors_per_model == 0,
            guard=False,
        )
        emit(
            figure="schedules_at_same_minute",
            value=same_minute,
            schedules_at_100=at_100["schedules"],
            goal="<= 2",
            met=same_minute <= 2,
            guard=False,
        )

        kinds = (
            ("run_start_extra_s_100", run_worker, True),
            ("run_start_extra_s_100_in_process", run_in_process, False),
        )
        for name, start_run, guarded in kinds[:1] if args.quick else kinds:
            small, large = [], []
            for _ in range(runs):  # alternated, so a slow minute of the machine hits both sides
                small.append(start_run(envs[1]))
                large.append(start_run(envs[100]))
            emit(step=name, one_spec_s=[round(s, 2) for s in small], hundred_specs_s=[round(s, 2) for s in large])
            best_small, best_large = min(small), min(large)
            figure(
                name,
                value=best_large,
                unit="s",
                peer="the same run with 1 spec, same run (value: at 100 specs; extra = value - peer)",
                peer_value=best_small,
                better="lower",
                goal=f"extra <= {RUN_START_EXTRA_GOAL_S} s" if guarded else None,
                met=best_large - best_small <= RUN_START_EXTRA_GOAL_S if guarded else None,
                extra_s=round(best_large - best_small, 2),
                guarded=guarded,
            )

        if args.quick:
            emit(step="idle_daemon", skipped="the quick form: make bench measures it")
            return 0
        idle_small = idle_cores(envs[1], scratch, warm_up, window)
        idle_large = idle_cores(envs[100], scratch, warm_up, window)
        figure(
            "idle_daemon_cores_100",
            value=idle_large,
            unit="cores",
            peer="the same daemon with 1 spec, same run",
            peer_value=idle_small,
            better="lower",
            goal=f"<= {IDLE_CORES_GOAL} cores",
            met=idle_large <= IDLE_CORES_GOAL,
            window_s=window,
            warm_up_s=warm_up,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
