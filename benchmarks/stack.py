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

The data is pinned: both deployments' replay offset is pinned before they start (`contract.REPLAY_OFFSET_WEEKS`,
the 2013 calendar itself: the pin file in the embedded home and in the stack's data volume), so the newest week
is the last week of 2013 whatever today's date.

Needs a Docker engine (../shared/tools/docker-engine up) and docker-compose; stand-in images for postgres and
prometheus are built from deploy/images. Not run by the guard (`make bench` only): it builds the image and brings
the whole stack up.

    python benchmarks/stack.py [--quick]

`--quick`: 5 runs in the burst instead of 20; the same figures. Prints JSON lines, figures in the contract's
form (benchmarks/contract.py): `make_up_to_healthy_webserver_s` (against the embedded `dagster dev` start),
`runs_per_minute` (the stack against the embedded default) and last `container_run_overhead_ratio` (the stack's
retrain against the embedded one's, goal 1.5).
"""

from __future__ import annotations

import argparse
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
from contract import REPLAY_OFFSET_WEEKS, figure, quick_option
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


#: The pin a deployment's replay reads (ML_PLATFORM_HOME/replay/<model>.json), written before it first starts.
PIN = {"offset_days": 7 * REPLAY_OFFSET_WEEKS, "pinned_on": "benchmarks/contract.py"}


def pin_replay(home: Path) -> None:
    (home / "replay").mkdir(parents=True, exist_ok=True)
    (home / "replay" / "flight_delay.json").write_text(json.dumps(PIN))


def latest_week(home: Path) -> date:
    pin_replay(home)
    os.environ["ML_PLATFORM_HOME"] = str(home)
    from ml_platform.core.sources import open_source
    from ml_platform.defs.partitions import data_partitions, training_partitions
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    weeks = training_partitions(spec, data_partitions(spec, open_source(spec, home / "replay")))
    last = weeks.get_last_partition_key()
    assert last is not None, "the replay has whole weeks"
    return date.fromisoformat(last)


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


def burst(client, week: date, count: int) -> dict:
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


def lifecycle(client, instance_of, week: date, burst_runs: int) -> dict:
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
    return {"retrain_s": round(seconds, 3), "phases": split, "burst": burst(client, week, burst_runs)}


def embedded(week: date, scratch: Path, burst_runs: int) -> dict:
    """`dagster dev` on the repository's workspace and dagster.yaml, in a fresh home (its replay pinned)."""
    from dagster import DagsterInstance

    home = scratch / "embedded"
    (home / "dagster").mkdir(parents=True)
    pin_replay(home)
    (home / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env.update(ML_PLATFORM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    port = free_port()
    log = (scratch / "dagster_dev.log").open("w")
    started = time.perf_counter()
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
        up_s = time.perf_counter() - started
        result = lifecycle(client, lambda: DagsterInstance.from_config(str(home / "dagster")), week, burst_runs)
        return {"up_to_webserver_s": round(up_s, 1), **result}
    except SystemExit:
        print((scratch / "dagster_dev.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_group(dev)
        # the endpoint asset starts the model's server detached (it outlives the run that deployed it): stop it
        # too, or it keeps the port after the benchmark
        from ml_platform.core.deploy import stop_local_server

        stop_local_server("flight_delay", home)


def seed_volume(volume: str) -> None:
    """The stack's data volume, created before `compose up` with the replay's pin in it (written by the image's
    own user, so the services own what they find)."""
    subprocess.run(["docker", "volume", "create", volume], check=True, stdout=subprocess.DEVNULL)
    script = f"mkdir -p /var/lib/ml_platform/replay && echo '{json.dumps(PIN)}' > /var/lib/ml_platform/replay/flight_delay.json"
    subprocess.run(
        ["docker", "run", "--rm", "-v", f"{volume}:/var/lib/ml_platform", "--entrypoint", "sh", IMAGE, "-c", script],
        check=True,
    )


def on_stack(week: date, scratch: Path, burst_runs: int) -> dict:
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
        seed_volume(f"{NAME}_data")
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
        result = lifecycle(client, lambda: DagsterInstance.from_config(str(instance_home)), week, burst_runs)
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    quick_option(parser, "5 runs in the burst instead of 20")
    burst_runs = 5 if parser.parse_args().quick else 20
    with tempfile.TemporaryDirectory(prefix="ml_platform_stack_bench_") as folder:
        scratch = Path(folder)
        week = latest_week(scratch / "calendar")
        local = embedded(week, scratch, burst_runs)
        emit(step="embedded", **local)
        stacked = on_stack(week, scratch, burst_runs)
        emit(step="stack", **stacked)
    figure(
        "make_up_to_healthy_webserver_s",
        value=stacked["up_to_webserver_s"],
        unit="s",
        peer="the embedded default: dagster dev until its GraphQL API answers",
        peer_value=local["up_to_webserver_s"],
        better="lower",
        goal=None,
        all_services_s=stacked["up_to_all_healthy_s"],
        image_build_s=stacked["image_build_s"],
        note="compose up on built images and fresh volumes, until /server_info answers",
    )
    figure(
        "runs_per_minute",
        value=stacked["burst"]["runs_per_minute"],
        unit="runs/min",
        peer="the embedded default, the same burst",
        peer_value=local["burst"]["runs_per_minute"],
        better="higher",
        goal=1.0,  # containers no slower than processes
        runs=burst_runs,
        note="single-day data runs submitted at once; stack: 4 at a time, each in its own container; "
        "embedded: 2 at a time, each a new process",
    )
    extra = {
        k: round(stacked["phases"].get(k, 0) - local["phases"].get(k, 0), 3)
        for k in {**local["phases"], **stacked["phases"]}
    }
    figure(
        "container_run_overhead_ratio",
        value=stacked["retrain_s"],
        unit="s",
        peer="the same retrain on the embedded default (dagster dev, a new process per run)",
        peer_value=local["retrain_s"],
        better="lower",
        goal=1.5,
        extra_s=round(stacked["retrain_s"] - local["retrain_s"], 3),
        extra_s_by_phase=extra,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
