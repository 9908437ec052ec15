"""Code locations per team (`ml_platform/locations.py`, `ml-platform workspace`): the workspace a specs root
gives, the errors a careless layout gets, and, under the real daemon of `make dev`, a broken spec in one team's
location while the other team's location loads, ticks and runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from ml_platform import locations
from ml_platform.spec import SpecError
from ml_platform_tests.waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
BUNDLED = yaml.safe_load((REPO / "ml_platform" / "bundled_specs" / "flight_delay.yaml").read_text())


def _spec(folder: Path, name: str, port: int, **changes: dict) -> Path:
    data = {**BUNDLED, "name": name, "serving": {**BUNDLED["serving"], "port": port}}
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_workspace_has_one_location_per_team_folder_with_specs(tmp_path):
    _spec(tmp_path / "fraud", "fraud_a", 9101)
    _spec(tmp_path / "pricing", "pricing_a", 9102)
    (tmp_path / "empty").mkdir()  # no spec: no location
    (tmp_path / ".git").mkdir()
    (tmp_path / "notes.yaml").write_text("not a team: a file at the root\n")
    workspace = yaml.safe_load(locations.workspace_yaml(tmp_path))
    assert workspace == {
        "load_from": [
            {"python_module": {"module_name": "ml_platform.locations", "attribute": t, "location_name": t}}
            for t in ("fraud", "pricing")
        ]
    }
    out = tmp_path / "teams.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli", "workspace", str(tmp_path), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "2 code locations" in done.stdout and yaml.safe_load(out.read_text()) == workspace


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", r"the specs folder does not exist"),
        ("flat", r"no team folder with specs \(expected .*/<team>/<model>.yaml\)"),
    ],
)
def test_a_root_without_team_folders_is_refused_with_the_layout_it_expects(tmp_path, layout, message):
    root = tmp_path / "specs"
    if layout == "flat":  # specs straight in the root: one location (workspace.yaml), not teams
        _spec(root, "flat_a", 9103)
    with pytest.raises(SpecError, match=message):
        locations.workspace_yaml(root)
    done = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli", "workspace", str(root)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and str(root) in done.stderr


def test_a_team_name_that_is_no_folder_names_the_teams_there_are(tmp_path, monkeypatch):
    _spec(tmp_path / "fraud", "fraud_a", 9104)
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(tmp_path))
    with pytest.raises(SpecError, match=r"frad: no such team folder; the teams under .* are \['fraud'\]"):
        locations.team_definitions("frad")
    assert not hasattr(locations, "_private")  # Python's own probes get AttributeError, not a spec error


def test_a_model_name_used_by_two_teams_fails_the_location_naming_both_files(tmp_path, monkeypatch):
    mine = _spec(tmp_path / "fraud", "shared_name", 9105)
    theirs = _spec(tmp_path / "pricing", "shared_name", 9106)
    (tmp_path / "pricing" / "broken.yaml").write_text("name: [unclosed\n")  # theirs to fix, not ours
    monkeypatch.setenv("ML_PLATFORM_HOME", str(tmp_path / "home"))
    with pytest.raises(SpecError) as error:
        locations.team_definitions("fraud", tmp_path)
    assert f"{mine}: name: found 'shared_name', already used by {theirs} (location pricing)" in str(error.value)


def test_a_broken_spec_fails_its_own_location_while_the_other_ticks_and_runs(tmp_path, make_dev, monkeypatch):
    """The real `make dev` (webserver, daemon, a code server per location) over two team folders: `alpha` holds
    a good spec and a broken one, `beta` a good one."""
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorType
    from dagster_graphql import DagsterGraphQLClient

    root, home = tmp_path / "specs", tmp_path / "home"
    _spec(root / "alpha", "alpha_ok", free_port())
    broken = _spec(root / "alpha", "alpha_broken", free_port(), partitions={"cadence": "fortnightly"})
    _spec(root / "beta", "beta_ok", free_port())
    workspace = tmp_path / "teams.yaml"
    workspace.write_text(locations.workspace_yaml(root))
    ui_port = free_port()
    env = {**_environ(), "ML_PLATFORM_HOME": str(home), "ML_PLATFORM_SPECS": str(root)}
    process = make_dev(ui_port, env, f"WORKSPACE={workspace}")

    def entries() -> dict[str, dict] | None:
        assert process.poll() is None, process.log_path.read_text()[-3000:]
        try:
            answer = requests.post(f"http://127.0.0.1:{ui_port}/graphql", json={"query": LOCATIONS}, timeout=10)
        except requests.RequestException:
            return None
        found = {e["name"]: e for e in answer.json()["data"]["workspaceOrError"]["locationEntries"]}
        return found if all(e["loadStatus"] == "LOADED" for e in found.values()) else None

    loaded = wait_for(entries, 300, "both locations loading")
    alpha, beta = loaded["alpha"]["locationOrLoadError"], loaded["beta"]["locationOrLoadError"]
    assert beta["__typename"] == "RepositoryLocation", beta
    assert alpha["__typename"] == "PythonError", alpha
    shown = "\n".join([alpha["message"], *(cause["message"] for cause in alpha["causes"])])  # as the UI shows it
    assert str(broken) in shown and "partitions.cadence: found 'fortnightly'; allowed:" in shown, shown

    # beta runs: one day of its data, launched as the UI launches it (queued, then the daemon starts it)
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    from ml_platform.core.sources import open_source
    from ml_platform.defs.partitions import data_partitions
    from ml_platform.spec import load_spec

    spec = load_spec(root / "beta" / "beta_ok.yaml")
    day = data_partitions(spec, open_source(spec, home / "replay")).get_last_partition_key()
    client = DagsterGraphQLClient("127.0.0.1", port_number=ui_port)
    run_id = client.submit_job_execution(
        "beta_ok_data", repository_location_name="beta", tags={"dagster/partition": day}
    )

    def finished() -> str | None:
        status = client.get_run_status(run_id).value
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert wait_for(finished, 300, "beta's run") == "SUCCESS", process.log_path.read_text()[-3000:]

    # beta's sensors tick under the daemon; alpha has none to tick
    def ticked_locations() -> set[str] | None:
        with DagsterInstance.from_config(str(home / "dagster")) as instance:
            ticked = {
                state.origin.repository_origin.code_location_origin.location_name
                for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                if instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            }
        return ticked or None

    assert wait_for(ticked_locations, 180, "a sensor tick") == {"beta"}


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message causes { message } } } } } } }"""


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_PLATFORM_"))}
