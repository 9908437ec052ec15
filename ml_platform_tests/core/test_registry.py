"""The registry against a real MLflow SQLite store: aliases, promotion, rollback, the audit trail, pyfunc loading."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ml_platform.core.features import build_features
from ml_platform.core.model import Model
from ml_platform.core.pyfunc_flavour import log_arguments
from ml_platform.core.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry, RegistryError
from ml_platform.core.sources import nycflights13
from ml_platform.core.training import split_by_time, train
from ml_platform.spec import BUNDLED_SPECS, load_spec

NAME = "flight_delay"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[list[Path], pd.DataFrame]:
    """Two real models saved as folders (the full window, and one starting a week later), and rows to score."""
    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    raw = nycflights13.load(nycflights13.Replay(offset_days=0), datetime(2013, 5, 1), datetime(2013, 6, 26))
    features = build_features(raw, spec)[0]
    root = tmp_path_factory.mktemp("registry_models")
    folders = []
    for i, start in enumerate(["2013-05-01", "2013-05-08"]):
        window = features[features["scheduled_departure"] >= start].reset_index(drop=True)
        split = split_by_time(window, spec)
        folders.append(train(spec, split).model.save(root / f"v{i + 1}"))
    rows = split.test.head(300)[spec.features.names].reset_index(drop=True)
    # as a caller sends them (the logged signature's types): categorical values as text, not pandas categories
    return folders, rows.astype(dict.fromkeys(spec.features.categorical, object))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh MLflow SQLite store (tracking and registry) with one experiment; global URIs reset afterwards."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("registry-test", artifact_location=(tmp_path / "artifacts").as_uri())
    yield client, experiment
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _log(folder: Path, experiment: str) -> tuple[str, str]:
    """Log a saved model as the platform's pyfunc; return (model URI, run id)."""
    with mlflow.start_run(experiment_id=experiment) as run, log_arguments(folder, Model.load(folder)) as arguments:
        info = mlflow.pyfunc.log_model(name="model", **arguments)
    return info.model_uri, run.info.run_id


def _register(registry: Registry, folder: Path, experiment: str, **tags) -> str:
    uri, run_id = _log(folder, experiment)
    return registry.register(uri, run_id, tags=tags, description="flight delays")


def _champion_and_challenger(registry: Registry, folders: list[Path], experiment: str) -> None:
    """v1 promoted to champion, v2 registered as challenger."""
    _register(registry, folders[0], experiment)
    registry.promote("1", "first", {})
    _register(registry, folders[1], experiment)


def test_register_creates_version_one_as_challenger(store, models):
    client, experiment = store
    registry = Registry(client, NAME)
    version = _register(registry, models[0][0], experiment, spec_digest="abc", valid_roc_auc=0.75)
    assert version == "1"
    assert registry.aliases() == {CHALLENGER: "1"}
    assert registry.version_of(CHAMPION) is None and registry.version_of(CHALLENGER) == "1"
    assert client.get_registered_model(NAME).description == "flight delays"
    assert client.get_model_version(NAME, "1").tags == {"spec_digest": "abc", "valid_roc_auc": "0.75"}
    assert registry.history() == []  # registering moves no champion: nothing to audit


def test_promote_register_promote_and_rollback_twice(store, models):
    client, experiment = store
    folders, _ = models
    registry = Registry(client, NAME)
    started = datetime.now(UTC).replace(microsecond=0)

    assert _register(registry, folders[0], experiment) == "1"
    first = registry.promote("1", "first model", {"gates": "passed"})
    assert registry.aliases() == {CHAMPION: "1"}  # challenger removed, no previous yet
    assert first["action"] == "promote" and first["version"] == "1" and first["from_version"] is None

    assert _register(registry, folders[1], experiment) == "2"
    assert registry.aliases() == {CHAMPION: "1", CHALLENGER: "2"}
    registry.promote("2", "better model", {})
    assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1"}

    back = registry.rollback("live roc_auc fell", {"live_roc_auc": 0.55})
    assert registry.aliases() == {CHAMPION: "1", PREVIOUS: "2"}
    assert (back["version"], back["from_version"]) == ("1", "2")
    registry.rollback("undo the rollback", {})
    assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1"}

    history = registry.history()
    assert [(h["action"], h["version"], h["from_version"], h["reason"]) for h in history] == [
        ("promote", "1", None, "first model"),
        ("promote", "2", "1", "better model"),
        ("rollback", "1", "2", "live roc_auc fell"),
        ("rollback", "2", "1", "undo the rollback"),
    ]
    for record in history:
        assert started <= datetime.fromisoformat(record["at"]) <= datetime.now(UTC)
    assert history[0]["gates"] == "passed" and history[2]["live_roc_auc"] == 0.55
    assert "last_promote" in client.get_model_version(NAME, "2").tags
    assert "last_rollback" in client.get_model_version(NAME, "1").tags


def test_rollback_without_previous_raises(store, models):
    client, experiment = store
    registry = Registry(client, NAME)
    _register(registry, models[0][0], experiment)
    with pytest.raises(RegistryError, match=r"no 'previous' version.*champion is None"):
        registry.rollback("nothing promoted yet", {})
    registry.promote("1", "first", {})
    with pytest.raises(RegistryError, match=r"no 'previous' version.*champion is 1"):
        registry.rollback("only one champion ever", {})
    assert registry.aliases() == {CHAMPION: "1"}
    assert [h["action"] for h in registry.history()] == ["promote"]


def test_promoting_an_unknown_version_raises_and_the_same_version_is_a_noop(store, models):
    client, experiment = store
    registry = Registry(client, NAME)
    _register(registry, models[0][0], experiment)
    with pytest.raises(RegistryError, match="no version 7"):
        registry.promote("7", "typo", {})
    registry.promote("1", "first", {})
    again = registry.promote("1", "again", {})
    assert again["action"] == "promote-noop" and again["from_version"] == "1"
    assert registry.aliases() == {CHAMPION: "1"}  # the champion is not its own previous


def test_a_failed_gate_is_recorded_and_moves_nothing(store, models):
    client, experiment = store
    folders, _ = models
    registry = Registry(client, NAME)
    _champion_and_challenger(registry, folders, experiment)
    before = registry.aliases()
    record = registry.record(
        "gate-failed", "2", "metric_floor: roc_auc 0.51 < 0.65", {"gates": {"metric_floor": False}}
    )
    assert registry.aliases() == before == {CHAMPION: "1", CHALLENGER: "2"}
    assert (record["action"], record["version"], record["from_version"]) == ("gate-failed", "2", "1")
    last = registry.history()[-1]
    assert last["action"] == "gate-failed" and last["reason"].startswith("metric_floor")
    assert last["gates"] == {"metric_floor": False}
    assert "last_gate-failed" in client.get_model_version(NAME, "2").tags


def test_oversized_audit_details_are_trimmed_but_the_decision_is_kept(store, models):
    client, experiment = store
    registry = Registry(client, NAME)
    _register(registry, models[0][0], experiment)
    record = registry.promote("1", "first", {"slices": "x" * 10_000})
    assert set(record) == {"action", "version", "from_version", "reason", "at"}
    assert registry.history() == [record]


def test_the_champion_loaded_through_mlflow_predicts_exactly_like_the_platform(store, models):
    client, experiment = store
    folders, rows = models
    registry = Registry(client, NAME)
    for folder in folders:
        _register(registry, folder, experiment)
    registry.promote("1", "first", {})
    registry.promote("2", "second", {})
    expected = [Model.load(folder).predict(rows) for folder in folders]
    assert not np.array_equal(expected[0], expected[1])

    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").predict(rows)
    assert np.array_equal(champion["prediction"].to_numpy(), expected[1])

    registry.rollback("test", {})
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").predict(rows)
    assert np.array_equal(champion["prediction"].to_numpy(), expected[0])
    previous = mlflow.pyfunc.load_model(f"models:/{NAME}@{PREVIOUS}").predict(rows.to_dict("list"))
    assert np.array_equal(previous["prediction"].to_numpy(), expected[1])


def test_only_a_version_that_passed_every_gate_is_promoted_past_the_gates(store, models):
    client, experiment = store
    folders, _ = models
    registry = Registry(client, NAME)
    _champion_and_challenger(registry, folders, experiment)
    with pytest.raises(RegistryError, match="gates are not run"):
        registry.promote_gated("2", "online win", {})
    run_id = client.get_model_version(NAME, "2").run_id
    client.set_tag(run_id, "gate.metric_floor", "passed")
    client.set_tag(run_id, "gate.fairness_gap", "failed")
    registry.mark_gates("2", passed=False)
    with pytest.raises(RegistryError, match="fairness_gap"):
        registry.promote_gated("2", "online win", {})
    assert registry.aliases() == {CHAMPION: "1", CHALLENGER: "2"}
    assert client.get_model_version(NAME, "2").tags["gates"] == "failed"

    client.set_tag(run_id, "gate.fairness_gap", "passed")
    record = registry.promote_gated("2", "online win", {"gain": 0.03})
    assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1"}
    assert record["gates"] == {"metric_floor": "passed", "fairness_gap": "passed"} and record["gain"] == 0.03


def test_retiring_a_challenger_removes_only_its_alias_and_is_audited(store, models):
    client, experiment = store
    folders, _ = models
    registry = Registry(client, NAME)
    _champion_and_challenger(registry, folders, experiment)
    record = registry.retire_challenger("lost online", {"gain": -0.02})
    assert registry.aliases() == {CHAMPION: "1"} and str(client.get_model_version(NAME, "2").version) == "2"
    assert (record["action"], record["version"], record["from_version"]) == ("retire-challenger", "2", "1")
    assert registry.history()[-1]["gain"] == -0.02
    with pytest.raises(RegistryError, match="no challenger"):
        registry.retire_challenger("again", {})


def test_a_model_never_registered_has_no_aliases_and_no_history(store):
    client, _ = store
    registry = Registry(client, "never_registered")
    assert registry.aliases() == {} and registry.history() == [] and registry.version_of(CHAMPION) is None
