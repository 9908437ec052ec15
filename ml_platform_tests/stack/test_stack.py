"""The production stack end to end, then its faults: nothing lost, nothing half-done.

One stack for the whole file (see conftest.py), in this order: the lifecycle through the Dagster GraphQL API
(each run in its own container, history in PostgreSQL, versions and aliases on the MLflow server, the endpoint
answering and Prometheus scraping it); a READ-only MLflow user, and `ml-platform review` reading production
through it; then faults: a run's container killed mid-training, the daemon killed with a run in flight and one
queued, PostgreSQL restarted while sensors tick, and the MLflow server down during a deploy; last, `down
--volumes` with a run container left behind. Docker removes each run's container once it exits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from ml_platform_tests.stack.conftest import NAME, run_in_env, wait_for

pytestmark = pytest.mark.docker

LOCATION = {"repository_location_name": "ml_platform"}
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")


def _latest_week() -> date:
    """The newest training week of the bundled spec (its replay calendar is pinned from today's date)."""
    previous = os.environ.get("ML_PLATFORM_HOME")
    with tempfile.TemporaryDirectory() as home:
        os.environ["ML_PLATFORM_HOME"] = home
        try:
            from ml_platform.core.sources import open_source
            from ml_platform.defs.partitions import data_partitions, training_partitions
            from ml_platform.spec import BUNDLED_SPECS, load_spec

            spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
            weeks = training_partitions(spec, data_partitions(spec, open_source(spec, Path(home) / "replay")))
            return date.fromisoformat(weeks.get_last_partition_key())
        finally:
            if previous is None:
                os.environ.pop("ML_PLATFORM_HOME", None)
            else:
                os.environ["ML_PLATFORM_HOME"] = previous


WEEK = _latest_week()


@pytest.fixture(scope="module")
def dagster(stack):
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient("127.0.0.1", port_number=stack.port("ML_PLATFORM_WEBSERVER_PORT"))


def _status(dagster, run_id: str) -> str:
    try:
        return dagster.get_run_status(run_id).value
    except Exception as error:  # the webserver restarting, PostgreSQL restarting: ask again
        return f"unknown ({type(error).__name__})"


def _wait_run(dagster, run_id: str, timeout: float = 600) -> str:
    return wait_for(lambda: (s := _status(dagster, run_id)) in TERMINAL and s, timeout, f"run {run_id} ending", 2)


def _succeeds(stack, dagster, run_id: str, timeout: float = 600) -> None:
    """The run ends in SUCCESS; else the failure says what its failure events said."""
    status = _wait_run(dagster, run_id, timeout)
    if status != "SUCCESS":
        events = _sql(
            stack,
            "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type IN "
            "('STEP_FAILURE', 'RUN_FAILURE', 'ENGINE_EVENT') ORDER BY id",
            run_id,
        )
        messages = [_message(json.loads(e)) for (e,) in events][-6:]
        raise AssertionError(f"run {run_id} ended {status}: {messages}")


def _message(event: dict) -> str:
    """An event's message, with the error a step failure carries."""
    error = ((event.get("dagster_event") or {}).get("event_specific_data") or {}).get("error") or {}
    return f"{event.get('user_message', '')[:300]} {error.get('message', '')[:900]}".strip()


def _sql(stack, query: str, *args) -> list[tuple]:
    import psycopg2

    env = stack.env
    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=stack.port("ML_PLATFORM_POSTGRES_PORT"),
            user=env.get("ML_PLATFORM_POSTGRES_USER", "ml_platform"),
            password=env["ML_PLATFORM_POSTGRES_PASSWORD"],
            dbname="dagster",
            connect_timeout=5,
        ) as db,
        db.cursor() as cursor,
    ):
        cursor.execute(query, args)
        return cursor.fetchall()


def _run_containers(run_id: str) -> list[dict]:
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dagster/run_id={run_id}"], capture_output=True, text=True
    ).stdout.split()
    inspected = [
        json.loads(subprocess.run(["docker", "inspect", c], capture_output=True, text=True).stdout or "[]")
        for c in found
    ]
    return [details for found_one in inspected for details in found_one]  # one removed meanwhile: skipped


def _launches(stack, run_id: str) -> list[tuple[str, str]]:
    """(container id, image) of each container the run launcher started for the run, from the run's event log
    (the containers themselves are gone once they exit)."""
    events = _sql(
        stack,
        "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ENGINE_EVENT' ORDER BY id",
        run_id,
    )
    # an engine event's text is its dagster_event's message (its user_message is empty), here
    # "[DockerRunLauncher] Launching run in a new container <id> with image <image>"
    messages = [(json.loads(e).get("dagster_event") or {}).get("message") or "" for (e,) in events]
    found = [re.search(r"Launching run in a new container (\w+) with image (\S+)", m) for m in messages]
    return [(match[1], match[2]) for match in found if match]


def _registry(mlflow_env, user: str = "service") -> dict:
    """Versions, their gates tags and the aliases of flight_delay on the MLflow server, as `user` sees them."""
    code = """
import json
from mlflow import MlflowClient
client = MlflowClient()
model = client.get_registered_model("flight_delay")
versions = {v.version: v.tags.get("gates") for v in client.search_model_versions("name='flight_delay'")}
print(json.dumps({"aliases": model.aliases, "versions": versions}))
"""
    result = run_in_env(code, mlflow_env[user])
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


def _predict(stack, rows: int = 3) -> requests.Response:
    row = {
        "distance": 719.0,
        "sched_dep_time": 900,
        "temp": 71.1,
        "dewp": 55.9,
        "humid": 58.4,
        "wind_dir": 200.0,
        "wind_speed": 9.2,
        "precip": 0.0,
        "pressure": 1015.2,
        "visib": 10.0,
        "plane_year": 2004.0,
        "plane_seats": 149.0,
        "carrier": "UA",
        "origin": "EWR",
        "dest": "ORD",
        "plane_manufacturer": "BOEING",
        "day_of_week": 2,
        "month": 6,
    }
    return requests.post(
        f"{stack.url('ML_PLATFORM_ENDPOINT_PORT')}/v1/models/flight_delay/predict",
        json={"instances": [row] * rows},
        timeout=10,
        headers={"Authorization": f"Bearer {stack.env['ML_PLATFORM_API_TOKEN']}"},
    )


def test_the_lifecycle_runs_each_step_in_its_own_container_on_postgres_and_the_tracking_server(
    stack, dagster, mlflow_env
):
    # before any model exists the endpoint is not ready, and says the registry answers (basic-auth denies a
    # read of a model nobody registered yet: that is "no champion", not an outage)
    endpoint = stack.url("ML_PLATFORM_ENDPOINT_PORT")
    ready = wait_for(
        lambda: (body := requests.get(f"{endpoint}/ready", timeout=5).json())["registry"] == "ok" and body,
        60,
        "/ready seeing the registry before the first model",
    )
    assert ready["ready"] is False and ready["version"] is None
    week_end = WEEK + timedelta(days=6)
    data = dagster.submit_job_execution(
        "flight_delay_data",
        **LOCATION,
        tags={
            "dagster/asset_partition_range_start": (week_end - timedelta(days=62)).isoformat(),
            "dagster/asset_partition_range_end": week_end.isoformat(),
        },
    )
    _succeeds(stack, dagster, data)
    retrain = dagster.submit_job_execution(
        "flight_delay_retrain", **LOCATION, tags={"dagster/partition": WEEK.isoformat()}
    )
    # the run's container while it trains: the project image, the host's network, the shared volume, the stack's
    # labels, and removed by Docker once it exits
    (running,) = wait_for(lambda: _run_containers(retrain), 120, "the retraining's container", 0.3)
    _succeeds(stack, dagster, retrain)
    deploy = dagster.submit_job_execution("__ASSET_JOB", **LOCATION, asset_selection=[["flight_delay", "endpoint"]])
    _succeeds(stack, dagster, deploy)

    assert running["Config"]["Image"] == stack.env["ML_PLATFORM_IMAGE"]
    assert running["HostConfig"]["NetworkMode"] == "host" and running["HostConfig"]["AutoRemove"] is True
    assert any(m["Destination"] == "/var/lib/ml_platform" for m in running["Mounts"])
    assert running["Config"]["Labels"]["ml_platform/stack"] == NAME
    assert running["Config"]["Labels"]["ml_platform/role"] == "run"
    # each run in its own container of the project image, and none left once the runs have ended
    launches = {run: _launches(stack, run) for run in (data, retrain, deploy)}
    assert all(len(found) == 1 for found in launches.values()), launches
    assert len({found[0][0] for found in launches.values()}) == 3
    assert {image for found in launches.values() for _, image in found} == {stack.env["ML_PLATFORM_IMAGE"]}
    assert launches[retrain][0][0] == running["Id"]
    ended = (data, retrain, deploy)
    wait_for(lambda: not any(_run_containers(r) for r in ended), 30, "Docker removing the ended runs' containers")

    # run history and event logs are rows in PostgreSQL
    rows = dict(_sql(stack, "SELECT run_id, status FROM runs WHERE run_id IN (%s, %s, %s)", data, retrain, deploy))
    assert rows == {data: "SUCCESS", retrain: "SUCCESS", deploy: "SUCCESS"}
    events = dict(
        _sql(stack, "SELECT run_id, count(*) FROM event_logs WHERE run_id IN (%s, %s) GROUP BY run_id", retrain, deploy)
    )
    assert events[retrain] > 20 and events[deploy] > 5

    # the tracking server holds the registered version, gated, with its aliases
    registry = _registry(mlflow_env)
    assert registry["versions"] == {"1": "passed"} and registry["aliases"].get("champion") == "1"

    # the endpoint service answers through the stack with the champion, and refuses a caller without the token
    answer = _predict(stack)
    assert answer.status_code == 200 and answer.json()["version"] == "1" and len(answer.json()["predictions"]) == 3
    anonymous = requests.post(
        f"{stack.url('ML_PLATFORM_ENDPOINT_PORT')}/v1/models/flight_delay/predict", json={"instances": []}, timeout=10
    )
    assert anonymous.status_code == 401


def test_prometheus_scrapes_the_endpoint(stack):
    prometheus = stack.url("ML_PLATFORM_PROMETHEUS_PORT")

    def query(expression: str) -> list:
        return requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5).json()["data"][
            "result"
        ]

    for _ in range(20):
        assert _predict(stack, rows=1).status_code == 200
    served = wait_for(
        lambda: query('sum(ml_platform_requests_total{route="predict", code="200"}) >= 20'),
        60,
        "Prometheus scraping 20 predict requests",
    )
    assert float(served[0]["value"][1]) >= 20

    def p99_now() -> list:
        # traffic between two scrapes: a rate needs the buckets to grow inside its window
        assert _predict(stack, rows=1).status_code == 200
        return [
            r
            for r in query(
                "histogram_quantile(0.99, sum by (le) (rate(ml_platform_request_latency_seconds_bucket[1m])))"
            )
            if r["value"][1] not in ("NaN", "+Inf")
        ]

    p99 = wait_for(p99_now, 90, "a p99 latency from the histogram")
    assert 0 < float(p99[0]["value"][1]) < 5
    rules = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} == {
        "EndpointDown",
        "EndpointErrorRate",
        "EndpointP99Latency",
        "EndpointNoTraffic",
    }
    assert query('up{job="ml_platform_endpoint"}')[0]["value"][1] == "1"


def test_a_read_only_user_browses_the_registry_but_cannot_move_the_champion(stack, mlflow_env):
    seen = _registry(mlflow_env, "reader")
    assert seen["aliases"].get("champion") == "1" and "1" in seen["versions"]
    attempt = run_in_env(
        """
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
client = MlflowClient()
for move in (lambda: client.set_registered_model_alias("flight_delay", "champion", "1"),
             lambda: client.delete_registered_model_alias("flight_delay", "champion"),
             lambda: client.set_model_version_tag("flight_delay", "1", "gates", "failed")):
    try:
        move()
        print("ALLOWED")
    except MlflowException as error:
        print(error.error_code)
""",
        mlflow_env["reader"],
    )
    assert attempt.returncode == 0, attempt.stderr[-2000:]
    assert attempt.stdout.split() == ["PERMISSION_DENIED"] * 3
    after = _registry(mlflow_env)
    assert after["aliases"].get("champion") == "1" and after["versions"]["1"] == "passed"
    # and a wrong password is no user at all
    wrong = run_in_env(
        "from mlflow import MlflowClient; MlflowClient().search_registered_models()",
        {**mlflow_env["reader"], "MLFLOW_TRACKING_PASSWORD": "wrong"},
    )
    assert wrong.returncode != 0 and "401" in wrong.stderr


def test_a_review_reads_production_as_a_read_only_user_and_leaves_it_as_it_was(stack, mlflow_env, tmp_path):
    """`ml-platform review` as a CI job runs it: the tracking server through the READ-only account, the stored
    partitions where the stack's data volume keeps them; a candidate trained and gated beside champion v1, and
    the registry, its runs and every stored file as they were."""
    volume = subprocess.run(
        ["docker", "volume", "inspect", f"{NAME}_data", "--format", "{{.Mountpoint}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = Path(volume.stdout.strip())
    base, head = tmp_path / "base", tmp_path / "head"
    base.mkdir()
    head.mkdir()
    shutil.copy(data / "specs" / "flight_delay.yaml", base / "flight_delay.yaml")
    spec = yaml.safe_load((base / "flight_delay.yaml").read_text())
    spec["training"]["params"]["num_leaves"] = 31
    (head / "flight_delay.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    def state() -> tuple[dict, dict]:
        runs = run_in_env(
            "import json; from mlflow import MlflowClient; c = MlflowClient(); "
            "ids = [e.experiment_id for e in c.search_experiments()]; "
            "print(json.dumps(sorted((r.info.run_id, r.info.status) for r in c.search_runs(ids))))",
            mlflow_env["service"],
        )
        assert runs.returncode == 0, runs.stderr[-2000:]
        files = {
            str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((data / "storage").rglob("*"))
            if p.is_file()
        }
        return {"registry": _registry(mlflow_env), "runs": json.loads(runs.stdout.splitlines()[-1])}, files

    before = state()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_PLATFORM_"))}
    env = {
        **clean,
        **mlflow_env["reader"],
        "ML_PLATFORM_STORAGE": str(data / "storage"),
        "ML_PLATFORM_HOME": str(tmp_path / "home"),
    }
    command = [str(Path(sys.executable).parent / "ml-platform"), "review", "--base", str(base), "--head", str(head)]
    done = subprocess.run(
        [*command, "--json", str(tmp_path / "review.json")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (model,) = json.loads((tmp_path / "review.json").read_text())["models"]
    assert model["candidate"]["champion_version"] == "1" and model["candidate"]["passed"]
    assert "would pass" in done.stdout and "`training.params.num_leaves`" in done.stdout
    assert state() == before


def test_a_run_whose_container_is_killed_mid_training_fails_alerts_and_changes_nothing(
    stack, dagster, mlflow_env, webhook
):
    before = _registry(mlflow_env)
    previous_week = WEEK - timedelta(days=7)
    run = dagster.submit_job_execution(
        "flight_delay_retrain",
        **LOCATION,
        tags={"dagster/partition": previous_week.isoformat(), "dagster/max_retries": "0"},
    )
    # mid-training: the model step has opened its MLflow run
    find = f"""
from mlflow import MlflowClient
client = MlflowClient()
experiment = client.get_experiment_by_name("ml_platform/flight_delay")
print(len(client.search_runs([experiment.experiment_id], "tags.dagster_run_id = '{run}'")))
"""
    wait_for(
        lambda: run_in_env(find, mlflow_env["service"]).stdout.strip() == "1",
        300,
        "the model step starting its MLflow run",
    )
    (container,) = _run_containers(run)
    subprocess.run(["docker", "kill", container["Id"]], check=True, capture_output=True)

    assert _wait_run(dagster, run, timeout=180) == "FAILURE"
    assert not _run_containers(run), "the killed run's container is gone"
    alert = wait_for(
        lambda: [a for a in webhook.received if a.get("run_id") == run], 120, "the failure alert reaching the webhook"
    )
    assert alert[0]["model"] == "flight_delay"
    # the killed step never ended its MLflow run: the failure sensor does, after the alert
    status = f"""
from mlflow import MlflowClient
client = MlflowClient()
experiment = client.get_experiment_by_name("ml_platform/flight_delay")
print(*(r.info.status for r in client.search_runs([experiment.experiment_id], "tags.dagster_run_id = '{run}'")))
"""
    wait_for(
        lambda: run_in_env(status, mlflow_env["service"]).stdout.split() == ["FAILED"],
        120,
        "the killed run's MLflow run ended as FAILED",
    )
    assert _registry(mlflow_env) == before, "a killed training run must not register or move anything"
    assert _predict(stack).json()["version"] == before["aliases"]["champion"]
    assert not _sql(stack, "SELECT run_id FROM run_tags WHERE key = 'dagster/parent_run_id' AND value = %s", run), (
        "dagster/max_retries=0: no retry"
    )


def test_killing_the_daemon_loses_and_duplicates_no_run(stack, dagster, mlflow_env):
    champion = _registry(mlflow_env)["aliases"]["champion"]
    first, last = (WEEK - timedelta(days=days) for days in (100, 80))
    in_flight = dagster.submit_job_execution(
        "flight_delay_data",
        **LOCATION,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )
    wait_for(lambda: _status(dagster, in_flight) == "STARTED", 120, "the data run starting", 0.5)
    daemon = f"{stack.project}_daemon_1"
    subprocess.run(["docker", "kill", daemon], check=True, capture_output=True)
    subprocess.run(["docker", "stop", daemon], capture_output=True)  # keep it down (its restart policy would not)
    day = (WEEK - timedelta(days=70)).isoformat()
    queued = dagster.submit_job_execution("flight_delay_data", **LOCATION, tags={"dagster/partition": day})
    time.sleep(5)
    assert _status(dagster, queued) == "QUEUED", "without a daemon a run waits in the queue"
    subprocess.run(["docker", "start", daemon], check=True, capture_output=True)

    _succeeds(stack, dagster, in_flight)
    _succeeds(stack, dagster, queued)
    for key, value in (("dagster/asset_partition_range_start", first.isoformat()), ("dagster/partition", day)):
        runs = _sql(
            stack,
            "SELECT r.run_id FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
            "WHERE r.pipeline_name = 'flight_delay_data' AND t.key = %s AND t.value = %s",
            key,
            value,
        )
        assert len(runs) == 1, f"one run for {key}={value}: {runs}"
    assert len(_launches(stack, in_flight)) == 1 and len(_launches(stack, queued)) == 1, "each launched exactly once"
    assert _registry(mlflow_env)["aliases"]["champion"] == champion


def test_a_postgres_restart_loses_no_tick_or_run_and_the_daemon_recovers_by_itself(stack, dagster):
    ticks_before = _sql(stack, "SELECT count(*), max(id) FROM job_ticks")[0]
    assert ticks_before[0] > 0, "sensors have been ticking"
    runs_before = _sql(stack, "SELECT count(*) FROM runs")[0][0]
    stack.compose("restart", "postgres", capture=True)
    wait_for(lambda: _can_query(stack), 60, "PostgreSQL answering again")
    newest_at_restart = _sql(stack, "SELECT max(id) FROM job_ticks")[0][0]
    # the daemon goes on ticking sensors without anyone touching it
    wait_for(
        lambda: _sql(stack, "SELECT count(*) FROM job_ticks WHERE id > %s", newest_at_restart)[0][0],
        180,
        "a sensor tick after the restart",
        5,
    )
    assert _sql(stack, "SELECT count(*) FROM job_ticks WHERE id <= %s", ticks_before[1])[0][0] == ticks_before[0]
    assert _sql(stack, "SELECT count(*) FROM runs")[0][0] == runs_before
    # the webserver too: the first launch after the restart works, and creates exactly one run
    tags = {"dagster/partition": (WEEK - timedelta(days=71)).isoformat()}
    run = dagster.submit_job_execution("flight_delay_data", **LOCATION, tags=tags)
    _succeeds(stack, dagster, run)
    created = _sql(
        stack,
        "SELECT r.run_id FROM runs r JOIN run_tags t ON t.run_id = r.run_id WHERE "
        "r.pipeline_name = 'flight_delay_data' AND t.key = 'dagster/partition' AND t.value = %s",
        tags["dagster/partition"],
    )
    assert created == [(run,)]


def _can_query(stack) -> bool:
    try:
        return bool(_sql(stack, "SELECT 1"))
    except Exception:
        return False


def test_with_the_tracking_server_down_the_endpoint_keeps_serving_and_says_why(stack, dagster, mlflow_env):
    endpoint = stack.url("ML_PLATFORM_ENDPOINT_PORT")
    serving = _predict(stack).json()["version"]
    stack.compose("stop", "mlflow", capture=True)
    try:
        ready = wait_for(
            lambda: (body := requests.get(f"{endpoint}/ready", timeout=5).json())["registry"] != "ok" and body,
            90,
            "/ready reporting the registry down",
        )
        assert ready["ready"] is True and ready["version"] == serving
        assert ready["registry"]["reachable"] is False and ready["registry"]["error"]
        answer = _predict(stack)
        assert answer.status_code == 200 and answer.json()["version"] == serving
        deploy = dagster.submit_job_execution("__ASSET_JOB", **LOCATION, asset_selection=[["flight_delay", "endpoint"]])
        assert _wait_run(dagster, deploy, timeout=300) == "FAILURE"
        assert _predict(stack).json()["version"] == serving
    finally:
        stack.compose("start", "mlflow", capture=True)
    wait_for(
        lambda: requests.get(f"{endpoint}/ready", timeout=5).json()["registry"] == "ok",
        120,
        "/ready seeing the registry again",
    )


def test_down_with_volumes_removes_the_stacks_containers_and_volumes_even_with_run_containers_left(stack):
    """Last: it takes the stack down. A run container as older versions left them (exited, kept, holding the
    data volume) used to fail `down --volumes` with "volume is in use"."""
    image = stack.env["ML_PLATFORM_IMAGE"]
    leftover = subprocess.run(
        [
            "docker",
            "create",
            "--network",
            "host",
            "--label",
            f"ml_platform/stack={NAME}",
            "--label",
            "ml_platform/role=run",
            "-v",
            f"{NAME}_data:/var/lib/ml_platform",
            image,
            "true",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(["docker", "start", "-a", leftover], check=True, capture_output=True)

    stack.down(volumes=True)

    assert stack.containers() == [], "no container labelled with the stack is left"
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"name={NAME}_"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert volumes == [], f"down --volumes leaves no volume: {volumes}"
