"""The production stack against the embedded default, in one run, one after the other on this machine.

(a) time from `make up` (compose up on built images, fresh volumes) to a healthy stack: the Dagster webserver
    first, then every service (webserver, MLflow, endpoint, Prometheus); the image build is timed beside it;
(b) one retraining of `flight_delay` (training_set → model → evaluation → champion for the newest week, after
    the same data run), launched through the webserver's GraphQL API and timed from submission to run success:
    on the stack (queued, started by the daemon in its own container of the project image) and on the
    embedded default (`dagster dev` with the repository's dagster.yaml: the default run launcher, a new
    process per run); each run's time is split into phases from its event log (queued, start: container or
    process until the run's first event, each step, finish) so the extra seconds are named step by step;
(c) 20 single-day data runs submitted at once, with each deployment's concurrency limits (stack: 4 runs at a
    time; embedded: 2): runs completed per minute.

Needs a Docker engine (../shared/tools/docker-engine up) and docker-compose; stand-in images for postgres and
prometheus are built from deploy/images.

    python benchmarks/stack.py

Prints JSON lines; the last is {"figure": "container_run_overhead_ratio", "value": stack_s / embedded_s,
"goal": 1.5, ...}.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
import types
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from training import free_port, graphql_client, stop_group

# deploy/stack.py, what `make up` runs (`deploy/` is not a package)
stack_tool = types.SimpleNamespace(**runpy.run_path(str(REPO / "deploy" / "stack.py")))

NAME = "mlp_bench"
IMAGE = "ml-platform:bench"
STANDINS = {
    "ML_PLATFORM_POSTGRES_IMAGE": ("ml-platform-standin/postgres:16", "postgres"),
    "ML_PLATFORM_PROMETHEUS_IMAGE": ("ml-platform-standin/prometheus:latest", "prometheus"),
}
LOCATION = {"repository_location_name": "ml_platform"}


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def latest_week(home: Path) -> date:
    os.environ["ML_PLATFORM_HOME"] = str(home)
    from ml_platform.core.sources import open_source
    from ml_platform.defs.partitions import data_partitions, training_partitions
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    weeks = training_partitions(spec, data_partitions(spec, open_source(spec, home / "replay")))
    return date.fromisoformat(weeks.get_last_partition_key())


def run_to_end(client, job: str, tags: dict, timeout: float = 900) -> tuple[str, float]:
    started = time.perf_counter()
    run_id = client.submit_job_execution(job, **LOCATION, tags=tags)
    deadline = time.monotonic() + timeout
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
        if time.monotonic() > deadline:
            raise SystemExit(f"{job} {tags} did not end in {timeout} s")
        time.sleep(0.1)
    if status != "SUCCESS":
        raise SystemExit(f"{job} {tags} ended {status}")
    return run_id, time.perf_counter() - started


def phases(instance, run_id: str) -> dict[str, float]:
    """Seconds of each phase of a run, from its record and event log: queued (submitted → launched), start
    (launched → the run's first event from its own process), each step, finish (last step → run success)."""
    record = instance.get_run_record_by_id(run_id)
    events = [
        (r.event_log_entry.timestamp, r.event_log_entry.dagster_event_type.value, r.event_log_entry.step_key)
        for r in instance.get_records_for_run(run_id).records
        if r.event_log_entry.dagster_event_type is not None
    ]
    first = {kind: stamp for stamp, kind, _ in reversed(events)}
    created = record.create_timestamp.timestamp()
    launched = first.get("PIPELINE_STARTING", created)
    started = first["PIPELINE_START"]
    out = {"queued": launched - created, "start": started - launched}
    step_start, last_end = {}, started
    for stamp, kind, step in events:
        if kind == "STEP_START":
            step_start[step] = stamp
        elif kind == "STEP_SUCCESS" and step in step_start:
            out[f"step {step}"] = stamp - step_start[step]
            last_end = max(last_end, stamp)
    out["finish"] = first["PIPELINE_SUCCESS"] - last_end
    out["unaccounted (between steps)"] = (
        (first["PIPELINE_SUCCESS"] - started) - sum(v for k, v in out.items() if k.startswith("step ")) - out["finish"]
    )
    return {k: round(v, 3) for k, v in out.items()}


def burst(client, week: date, count: int = 20) -> dict:
    """`count` single-day data runs submitted at once: wall time to the last success, runs per minute."""
    days = [(week - timedelta(days=150 + i)).isoformat() for i in range(count)]
    started = time.perf_counter()
    runs = [client.submit_job_execution("flight_delay_data", **LOCATION, tags={"dagster/partition": d}) for d in days]
    pending = set(runs)
    deadline = time.monotonic() + 1800
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            status = client.get_run_status(run_id).value
            if status in ("FAILURE", "CANCELED"):
                raise SystemExit(f"burst run {run_id} ended {status}")
            if status == "SUCCESS":
                pending.discard(run_id)
        time.sleep(0.5)
    wall = time.perf_counter() - started
    return {"runs": count, "wall_s": round(wall, 1), "runs_per_minute": round(count / wall * 60, 2)}


def lifecycle(client, instance_of, week: date) -> dict:
    week_end = week + timedelta(days=6)
    run_to_end(
        client,
        "flight_delay_data",
        {
            "dagster/asset_partition_range_start": (week_end - timedelta(days=62)).isoformat(),
            "dagster/asset_partition_range_end": week_end.isoformat(),
        },
    )
    run_id, seconds = run_to_end(client, "flight_delay_retrain", {"dagster/partition": week.isoformat()})
    with instance_of() as instance:
        split = phases(instance, run_id)
    return {"retrain_s": round(seconds, 3), "phases": split, "burst": burst(client, week)}


def embedded(week: date, scratch: Path) -> dict:
    """`dagster dev` on the repository's workspace and dagster.yaml, in a fresh home."""
    from dagster import DagsterInstance

    home = scratch / "embedded"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env.update(ML_PLATFORM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    port = free_port()
    log = (scratch / "dagster_dev.log").open("w")
    dev = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            str(REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = graphql_client(port, dev)
        return lifecycle(client, lambda: DagsterInstance.from_config(str(home / "dagster")), week)
    except SystemExit:
        print((scratch / "dagster_dev.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_group(dev)


def on_stack(week: date, scratch: Path) -> dict:
    from dagster import DagsterInstance

    started = time.perf_counter()
    subprocess.run(
        ["docker", "build", "--network", "host", "-q", "-t", IMAGE, str(REPO)], check=True, stdout=subprocess.DEVNULL
    )
    build_s = time.perf_counter() - started
    for tag, folder in STANDINS.values():
        subprocess.run(
            ["docker", "build", "--network", "host", "-q", "-t", tag, str(REPO / "deploy" / "images" / folder)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    env_file = scratch / "stack.env"
    settings = {name: str(free_port()) for name in stack_tool.DEFAULT_PORTS}
    settings.update({k: tag for k, (tag, _) in STANDINS.items()}, ML_PLATFORM_STACK=NAME, ML_PLATFORM_IMAGE=IMAGE)
    values = stack_tool.write_env(env_file, settings)
    stack = stack_tool.Stack(env_file, NAME)
    _clean(stack)
    try:
        started = time.perf_counter()
        stack.compose("up", "-d", capture=True)
        webserver = stack.url("ML_PLATFORM_WEBSERVER_PORT") + "/server_info"
        while not stack_tool.answers(webserver):
            time.sleep(0.2)
        webserver_s = time.perf_counter() - started
        stack.wait_healthy(300)
        healthy_s = time.perf_counter() - started
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient("127.0.0.1", port_number=stack.port("ML_PLATFORM_WEBSERVER_PORT"))
        instance_home = scratch / "stack_instance"
        instance_home.mkdir()
        (instance_home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
        os.environ.update(
            DAGSTER_POSTGRES_HOST="127.0.0.1",
            DAGSTER_POSTGRES_PORT=values["ML_PLATFORM_POSTGRES_PORT"],
            DAGSTER_POSTGRES_USER="ml_platform",
            DAGSTER_POSTGRES_DB="dagster",
            DAGSTER_POSTGRES_PASSWORD=values["ML_PLATFORM_POSTGRES_PASSWORD"],
            ML_PLATFORM_MAX_CONCURRENT_RUNS="4",
        )
        result = lifecycle(client, lambda: DagsterInstance.from_config(str(instance_home)), week)
        return {
            "image_build_s": round(build_s, 1),
            "up_to_webserver_s": round(webserver_s, 1),
            "up_to_all_healthy_s": round(healthy_s, 1),
            **result,
        }
    finally:
        _clean(stack)


def _clean(stack) -> None:
    def remove() -> None:
        found = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=ml_platform/stack={NAME}"], capture_output=True, text=True
        ).stdout.split()
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True)

    remove()
    stack.down(volumes=True)
    remove()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ml_platform_stack_bench_") as scratch:
        scratch = Path(scratch)
        week = latest_week(scratch / "calendar")
        local = embedded(week, scratch)
        emit(step="embedded", **local)
        stacked = on_stack(week, scratch)
        emit(step="stack", **stacked)
    emit(
        figure="make_up_to_healthy_webserver_s",
        value=stacked["up_to_webserver_s"],
        all_services_s=stacked["up_to_all_healthy_s"],
        image_build_s=stacked["image_build_s"],
        note="compose up on built images and fresh volumes, until /server_info answers",
    )
    emit(
        figure="runs_per_minute",
        stack=stacked["burst"]["runs_per_minute"],
        embedded=local["burst"]["runs_per_minute"],
        runs=20,
        note="single-day data runs submitted at once; stack: 4 at a time, each in its own container; "
        "embedded: 2 at a time, each a new process",
    )
    extra = {
        k: round(stacked["phases"].get(k, 0) - local["phases"].get(k, 0), 3)
        for k in {**local["phases"], **stacked["phases"]}
    }
    ratio = stacked["retrain_s"] / local["retrain_s"]
    emit(
        figure="container_run_overhead_ratio",
        value=round(ratio, 3),
        goal=1.5,
        met=ratio <= 1.5,
        stack_s=stacked["retrain_s"],
        embedded_s=local["retrain_s"],
        extra_s=round(stacked["retrain_s"] - local["retrain_s"], 3),
        extra_s_by_phase=extra,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
