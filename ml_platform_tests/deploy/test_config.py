"""The production stack's configuration, checked without starting a container: Dagster's own schema loads
deploy/dagster.yaml and deploy/workspace.yaml, docker-compose renders deploy/docker-compose.yaml, promtool
checks Prometheus' configuration and runs the alert rules' unit tests, and no file under deploy/ holds a
password. The Helm values (never exercised here: no Kubernetes) must agree with dagster.yaml."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yaml"
SERVICES = {"postgres", "mlflow", "code-server", "webserver", "daemon", "endpoint", "prometheus"}
SECRETS = {
    "ML_PLATFORM_POSTGRES_PASSWORD": "pg-secret-1",
    "ML_PLATFORM_MLFLOW_ADMIN_PASSWORD": "admin-secret-2",
    "ML_PLATFORM_MLFLOW_PASSWORD": "mlflow-secret-3",
    "ML_PLATFORM_MLFLOW_SECRET_KEY": "flask-secret-4",
    "ML_PLATFORM_API_TOKEN": "api-token-5",
}
# what docker-compose.yaml gives every platform container (x-platform-env), as the daemon sees it
INSTANCE_ENV = {
    "DAGSTER_POSTGRES_HOST": "db.internal",
    "DAGSTER_POSTGRES_PORT": "5433",
    "DAGSTER_POSTGRES_USER": "dagster_user",
    "DAGSTER_POSTGRES_PASSWORD": "pg-secret-1",
    "DAGSTER_POSTGRES_DB": "dagster",
    "ML_PLATFORM_MAX_CONCURRENT_RUNS": "3",
}


def _dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    return home


# --- deploy/dagster.yaml -------------------------------------------------------------------------------


def test_dagster_yaml_is_a_valid_instance_with_docker_launcher_and_the_training_queue(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_docker import DockerRunLauncher

    home = _dagster_home(tmp_path, monkeypatch)
    config, custom_class = dagster_instance_config(str(home))  # raises on anything the schema refuses
    assert custom_class is None and config["telemetry"] == {"enabled": False}

    ref = InstanceRef.from_dir(str(home))
    launcher = ref.run_launcher
    assert type(launcher) is DockerRunLauncher
    assert launcher.container_kwargs["network_mode"] == "host"
    # Docker removes each run's container when it exits: none piles up or holds the data volume
    assert launcher.container_kwargs["auto_remove"] is True
    assert {"DAGSTER_POSTGRES_PASSWORD", "MLFLOW_TRACKING_PASSWORD", "ML_PLATFORM_STORAGE"} <= set(launcher.env_vars)

    coordinator = ref.run_coordinator
    assert type(coordinator) is QueuedRunCoordinator
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 3  # ML_PLATFORM_MAX_CONCURRENT_RUNS, resolved
    assert queue.tag_concurrency_limits == [
        {"key": "ml_platform/training", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]

    assert ref.settings["run_monitoring"]["enabled"] is True
    assert ref.settings["run_monitoring"]["start_timeout_seconds"] > 0
    assert ref.settings["run_retries"] == {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}


def test_dagster_yaml_storage_is_postgres_with_every_connection_field_from_the_environment(tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.ref import InstanceRef
    from dagster_postgres import DagsterPostgresStorage

    home = _dagster_home(tmp_path, monkeypatch)
    ref = InstanceRef.from_dir(str(home))
    assert ref.run_storage_data.class_name == "PostgresRunStorage"
    assert ref.event_storage_data.class_name == "PostgresEventLogStorage"
    assert ref.schedule_storage_data.class_name == "PostgresScheduleStorage"

    postgres = yaml.safe_load((home / "dagster.yaml").read_text())["storage"]["postgres"]
    fields = postgres["postgres_db"]
    connection = ("hostname", "port", "username", "password", "db_name")
    assert all(set(fields[name]) == {"env"} for name in connection), fields  # {env: NAME}, never a literal

    resolved = process_config(DagsterPostgresStorage.config_type(), postgres)
    assert resolved.success, resolved.errors
    assert {name: resolved.value["postgres_db"][name] for name in connection} == {
        "hostname": "db.internal",
        "port": 5433,
        "username": "dagster_user",
        "password": "pg-secret-1",
        "db_name": "dagster",
    }
    monkeypatch.delenv("DAGSTER_POSTGRES_PASSWORD")
    missing = process_config(DagsterPostgresStorage.config_type(), postgres)
    assert not missing.success and "DAGSTER_POSTGRES_PASSWORD" in str([e.message for e in missing.errors])


# --- deploy/workspace.yaml -----------------------------------------------------------------------------


def test_workspace_yaml_is_one_grpc_location_named_ml_platform_from_the_environment(monkeypatch):
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    monkeypatch.setenv("ML_PLATFORM_CODE_SERVER_HOST", "10.1.2.3")
    monkeypatch.setenv("ML_PLATFORM_CODE_SERVER_PORT", "4123")
    [origin] = location_origins_from_yaml_paths([str(DEPLOY / "workspace.yaml")])
    assert isinstance(origin, GrpcServerCodeLocationOrigin)
    assert (origin.location_name, origin.host, origin.port) == ("ml_platform", "10.1.2.3", 4123)


# --- deploy/docker-compose.yaml ------------------------------------------------------------------------


def _compose_config(tmp_path: Path, settings: dict[str, str], *overlays: Path) -> subprocess.CompletedProcess:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip(
            "!!! docker-compose is not installed (Debian: apt-get install docker-compose): "
            "deploy/docker-compose.yaml NOT checked"
        )
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    # only the settings file may decide: compose would substitute from its own environment first
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ML_PLATFORM_", "COMPOSE_"))}
    files = [arg for path in (COMPOSE_FILE, *overlays) for arg in ("-f", str(path))]
    return subprocess.run(
        [compose, *files, "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
    )


@pytest.fixture
def compose_config(tmp_path) -> dict:
    result = _compose_config(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_renders_every_service_on_the_host_network(compose_config):
    services = compose_config["services"]
    assert set(services) == SERVICES
    assert {name: service.get("network_mode") for name, service in services.items()} == dict.fromkeys(SERVICES, "host")
    # the secrets arrive from the settings file, and every server binds the loopback address by default
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["ML_PLATFORM_POSTGRES_PASSWORD"]
    assert services["daemon"]["environment"]["MLFLOW_TRACKING_PASSWORD"] == SECRETS["ML_PLATFORM_MLFLOW_PASSWORD"]
    assert "127.0.0.1" in services["webserver"]["command"]


def test_compose_gives_the_daemon_every_variable_the_run_launcher_passes_on(compose_config):
    """DockerRunLauncher reads each listed variable from the daemon's environment when it launches a run and
    refuses to launch if one is not set."""
    launcher = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    wanted = {name for name in launcher["env_vars"] if "=" not in name}
    for service in ("daemon", "webserver", "code-server"):
        missing = wanted - set(compose_config["services"][service]["environment"])
        assert not missing, f"{service}: run launches would fail, not set: {sorted(missing)}"


def test_compose_run_containers_get_the_stacks_data_volume(tmp_path):
    result = _compose_config(tmp_path, {**SECRETS, "ML_PLATFORM_STACK": "staging"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["volumes"]["data"]["name"] == "staging_data"
    context = json.loads(config["services"]["code-server"]["environment"]["DAGSTER_CONTAINER_CONTEXT"])
    assert "staging_data:/var/lib/ml_platform" in context["docker"]["container_kwargs"]["volumes"]


def test_the_teams_overlay_serves_each_team_folder_from_its_own_code_server(tmp_path, monkeypatch):
    """deploy/teams: two code servers (`ml_platform.locations`, one team folder each) with the same settings, and
    the workspace the webserver and the daemon read names both."""
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    overlay = DEPLOY / "teams" / "docker-compose.teams.yaml"
    result = _compose_config(tmp_path, {**SECRETS, "ML_PLATFORM_SPECS": "/var/lib/ml_platform/specs"}, overlay)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == SERVICES | {"code-server-team-b"}
    servers = {}
    for name in ("code-server", "code-server-team-b"):
        command = services[name]["command"]
        assert command[command.index("--module-name") + 1] == "ml_platform.locations"
        servers[command[command.index("--location-name") + 1]] = command[command.index("--port") + 1]
        assert command[command.index("--attribute") + 1] == command[command.index("--location-name") + 1]
    assert servers == {"team_a": "4000", "team_b": "4001"}
    # the second server's settings are the first's (the overlay cannot reuse the base file's anchors)
    assert services["code-server-team-b"]["environment"] == services["code-server"]["environment"]
    for name in ("webserver", "daemon"):
        mounted = [v for v in services[name]["volumes"] if str(v).endswith("/opt/dagster/workspace.yaml:ro")]
        assert mounted and all("teams/workspace.yaml" in str(v) for v in mounted), mounted
    # the workspace they mount: both locations, on the servers' ports
    monkeypatch.setenv("ML_PLATFORM_CODE_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("ML_PLATFORM_CODE_SERVER_PORT", "4000")
    monkeypatch.setenv("ML_PLATFORM_TEAM_B_CODE_SERVER_PORT", "4001")
    origins = location_origins_from_yaml_paths([str(DEPLOY / "teams" / "workspace.yaml")])
    assert {(o.location_name, str(o.port)) for o in origins} == set(servers.items())  # type: ignore[attr-defined]
    # without the folder of team folders the overlay refuses to render, naming the variable
    refused = _compose_config(tmp_path, SECRETS, overlay)
    assert refused.returncode != 0 and "ML_PLATFORM_SPECS" in refused.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_render_without_a_secret(tmp_path, secret):
    result = _compose_config(tmp_path, {k: v for k, v in SECRETS.items() if k != secret})
    assert result.returncode != 0
    assert f"set {secret}" in result.stderr, result.stderr


# --- no password in a file -----------------------------------------------------------------------------

_SECRET_KEY = re.compile(r"(?<![\w{$.-])([\w.-]*(?:password|passwd|secret|token))[\"']?\s*[:=]\s*(\{[^}]*\}|\S*)", re.I)
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:([^@\s/]+)@")
# no value, a reference ({env: NAME}, ${NAME...}, $NAME), a placeholder (..., <...>) or a flag
_REFERENCE = re.compile(r"""^(?:|~|null|""|''|true|false|\{\s*env:\s*\w+\s*\}|\$\{.*|\$\w+.*|\.\.\.|<[^>]*>)$""")


def literal_secrets(path: Path, text: str) -> list[str]:
    """Lines of `text` that assign a literal value to a password, secret or token, or put one in a URL."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if any(not m.group(1).startswith("$") for m in _URL_CREDENTIALS.finditer(line)):
            found.append(f"{path}:{number}: {line.strip()}")
        for match in _SECRET_KEY.finditer(line):
            value = match.group(2).rstrip(",")
            if path.suffix == ".py":  # names and expressions are fine, string literals are not
                literal = re.match(r"""^(['"])(.+?)\1""", value)
                leak = bool(literal) and not _REFERENCE.match(literal.group(2))
            else:
                leak = not _REFERENCE.match(value.strip("\"'") if len(value) > 2 else value)
            if leak:
                found.append(f"{path}:{number}: {line.strip()}")
                break
    return found


def test_the_secret_scanner_finds_literals_and_accepts_references():
    leaks = {
        "a.yaml": "password: hunter2",
        "b.yaml": "  postgresqlPassword: 'hunter2'",
        "c.yml": "MLFLOW_TRACKING_PASSWORD: s3cret  # oops",
        "d.sh": "export API_TOKEN=abc",
        "e.py": 'auth = {"password": "hunter2"}',
        "f.sh": 'db="postgresql://me:hunter2@host/db"',
    }
    fine = {
        "a.yaml": "password: {env: DAGSTER_POSTGRES_PASSWORD}",
        "b.yaml": 'postgresqlPassword: ""  # unused',
        "c.yml": "POSTGRES_PASSWORD: ${ML_PLATFORM_POSTGRES_PASSWORD:?set it}",
        "e.py": "password = pair[1]",
        "d.sh": ': "${POSTGRES_PASSWORD:?must be set}"',
        "f.sh": 'db="postgresql://${U}:${P}@${H}"',
        "g.yaml": "postgresqlSecretName: ml-platform-postgresql",
    }
    assert all(literal_secrets(Path(name), text) for name, text in leaks.items())
    assert not [hit for name, text in fine.items() for hit in literal_secrets(Path(name), text)]


def test_no_file_under_deploy_holds_a_literal_password():
    files = [
        path
        for path in DEPLOY.rglob("*")
        if path.is_file()
        and not path.name.startswith(".env")
        and path.name != ".env"
        and "__pycache__" not in path.parts
    ]
    assert len(files) >= 10
    found = [hit for path in files for hit in literal_secrets(path.relative_to(REPO), path.read_text(errors="replace"))]
    assert not found, "\n".join(found)


# --- Prometheus ----------------------------------------------------------------------------------------


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("!!! promtool is not installed (Debian: apt-get install prometheus): deploy/prometheus NOT checked")
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_prometheus_config_is_valid_once_compose_fills_in_the_endpoint(tmp_path):
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    placeholders = set(re.findall(r"\bENDPOINT_[A-Z]+\b", config))
    assert placeholders == {"ENDPOINT_TARGET", "ENDPOINT_MODEL"}
    # compose's prometheus service replaces each of them before Prometheus starts
    command = " ".join(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["prometheus"]["command"])
    assert all(f"s/{name}/" in command for name in placeholders), command
    assert "/etc/ml_platform/alerts.yml" in config

    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    filled = (
        config.replace("ENDPOINT_TARGET", "127.0.0.1:8080")
        .replace("ENDPOINT_MODEL", "flight_delay")
        .replace("/etc/ml_platform/alerts.yml", str(tmp_path / "alerts.yml"))
    )
    (tmp_path / "prometheus.yml").write_text(filled)
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout + result.stderr


def test_alert_rules_are_valid():
    result = _promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests():
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in rules}  # every alert is shown firing
    result = _promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- deploy/helm/values.yaml ---------------------------------------------------------------------------


def test_helm_values_run_the_project_image_with_the_same_instance_settings():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]

    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == instance["run_coordinator"]["class"]
    limits = coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert limits == instance["run_coordinator"]["config"]["tag_concurrency_limits"]

    def snake(name: str) -> str:
        return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()

    for helm_key, yaml_key in (("runMonitoring", "run_monitoring"), ("runRetries", "run_retries")):
        mirrored = {snake(k): v for k, v in daemon[helm_key].items() if snake(k) in instance[yaml_key]}
        assert mirrored == instance[yaml_key], helm_key

    [deployment] = values["dagster-user-deployments"]["deployments"]
    args = deployment.get("codeServerArgs") or deployment["dagsterApiGrpcArgs"]
    compose_args = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["code-server"]["command"]
    module = args[args.index("--module-name") + 1]
    assert module == compose_args[compose_args.index("--module-name") + 1] == "ml_platform.definitions"
    assert (REPO / (module.replace(".", "/") + ".py")).is_file()
    assert deployment["envSecrets"] and deployment["env"]["ML_PLATFORM_STORAGE"].startswith(("s3://", "gs://"))

    [server] = values["dagsterWebserver"]["workspace"]["servers"]
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert server["name"] == workspace["location_name"] == args[args.index("--location-name") + 1]
    assert (server["host"], server["port"]) == (deployment["name"], deployment["port"])


def test_helm_teams_values_give_each_team_folder_its_own_deployment_with_the_base_settings():
    base = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["dagster-user-deployments"]["deployments"][0]
    teams = yaml.safe_load((DEPLOY / "helm" / "values-teams.yaml").read_text())
    deployments = teams["dagster-user-deployments"]["deployments"]
    servers = teams["dagsterWebserver"]["workspace"]["servers"]
    assert len(deployments) == len(servers) == 2
    for deployment, server in zip(deployments, servers, strict=True):
        args = deployment["codeServerArgs"]
        location = args[args.index("--location-name") + 1]
        assert args[args.index("--module-name") + 1] == "ml_platform.locations"
        assert args[args.index("--attribute") + 1] == location == server["name"]
        assert (server["host"], server["port"]) == (deployment["name"], deployment["port"])
        # Helm replaces lists whole: each deployment carries values.yaml's settings, plus the folder of teams
        assert {k: v for k, v in deployment["env"].items() if k != "ML_PLATFORM_SPECS"} == base["env"]
        assert deployment["envSecrets"] == base["envSecrets"] and deployment["image"] == base["image"]
        assert deployment["includeConfigInLaunchedRuns"] == base["includeConfigInLaunchedRuns"]
