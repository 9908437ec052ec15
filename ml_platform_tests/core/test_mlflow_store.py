"""The gateway to MLflow against a real SQLite store: where the store is, one client per store, and the model
behind an alias or a version, loaded back from a tiny real LightGBM model's logged files."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest

from ml_platform.core import mlflow_store
from ml_platform.core.model import FeatureEncoder, Model
from ml_platform.core.registry import Registry

NAME = "tiny"


def _tiny_model(seed: int) -> tuple[Model, pd.DataFrame]:
    """A real binary LightGBM model on 300 synthetic rows (one numeric, one categorical feature)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=300), "color": rng.choice(["red", "green", "blue"], size=300)})
    label = ((frame["x"] + (frame["color"] == "red") + rng.normal(scale=0.5, size=300)) > 0.5).astype(int)
    encoder = FeatureEncoder.fit(frame, ["x"], ["color"])
    data = lgb.Dataset(encoder.transform(frame), label, feature_name=encoder.names, categorical_feature=[1])
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 4,
            "min_data_in_leaf": 10,
            "verbose": -1,
            "seed": seed,
            "deterministic": True,
        },
        data,
        num_boost_round=10 + seed,
    )
    return Model(booster, encoder, {"task": "binary", "classes": [0, 1], "version_seed": seed}), frame


def _without_uri_variables(monkeypatch) -> None:
    """Unset both URI variables until the test ends (set first, so they are restored even when absent: the
    process-wide URIs export them)."""
    for variable in (mlflow_store.TRACKING_URI_ENV, mlflow_store.REGISTRY_URI_ENV):
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite store with one experiment; process-wide URIs and the URI variables reset afterwards."""
    _without_uri_variables(monkeypatch)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_store.use_store(uri)
    experiment = client.create_experiment("gateway", artifact_location=(tmp_path / "artifacts").as_uri())
    yield uri, client, experiment
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _log_and_register(client, experiment: str, model: Model, scratch: Path, smoke: list[dict]) -> tuple[str, str]:
    """Log the model's files the way training does, register them as a new version; (version, run id)."""
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(model.save(scratch / mlflow_store.MODEL_FILES)), mlflow_store.MODEL_FILES)
        mlflow.log_dict({"rows": smoke}, mlflow_store.SMOKE_ROWS)
    Registry(client, NAME).ensure_model()
    version = client.create_model_version(NAME, f"{run.info.artifact_uri}/{mlflow_store.MODEL_FILES}", run.info.run_id)
    return str(version.version), run.info.run_id


def test_a_tracking_server_keeps_artifacts_itself_and_a_local_store_under_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_HOME", str(tmp_path / "home"))
    _without_uri_variables(monkeypatch)
    for server in ("http://127.0.0.1:5000", "HTTPS://mlflow.example.com", "databricks"):
        assert mlflow_store.is_server(server)
        assert mlflow_store.default_artifact_root(server) is None, "a server's clients must not share a path"
    monkeypatch.setenv(mlflow_store.TRACKING_URI_ENV, "http://127.0.0.1:5000")
    assert mlflow_store.default_artifact_root() is None
    for local in ("sqlite:///a.db", "postgresql://u@h/db", "file:///tmp/mlruns", "/tmp/mlruns"):
        assert not mlflow_store.is_server(local)
        assert mlflow_store.default_artifact_root(local) == (tmp_path / "home" / "mlflow" / "artifacts").as_uri()


def test_the_uris_come_from_the_arguments_then_the_environment_then_the_platform_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_HOME", str(tmp_path / "home"))
    _without_uri_variables(monkeypatch)
    default = f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}"
    assert mlflow_store.default_tracking_uri() == default
    assert (tmp_path / "home" / "mlflow").is_dir(), "SQLite needs the folder of its file"
    assert mlflow_store.default_artifact_root() == (tmp_path / "home" / "mlflow" / "artifacts").as_uri()
    assert mlflow_store.resolve_uris() == (default, default)
    assert mlflow_store.resolve_uris("sqlite:///a.db") == ("sqlite:///a.db", "sqlite:///a.db")
    assert mlflow_store.resolve_uris("sqlite:///a.db", "sqlite:///r.db") == ("sqlite:///a.db", "sqlite:///r.db")
    monkeypatch.setenv(mlflow_store.TRACKING_URI_ENV, "sqlite:///env.db")
    assert mlflow_store.resolve_uris() == ("sqlite:///env.db", "sqlite:///env.db")
    assert mlflow_store.resolve_uris("sqlite:///a.db") == ("sqlite:///a.db", "sqlite:///a.db")
    monkeypatch.setenv(mlflow_store.REGISTRY_URI_ENV, "sqlite:///env-registry.db")
    assert mlflow_store.resolve_uris() == ("sqlite:///env.db", "sqlite:///env-registry.db")
    assert mlflow_store.resolve_uris("sqlite:///env.db") == ("sqlite:///env.db", "sqlite:///env-registry.db")
    assert mlflow_store.resolve_uris(None, "sqlite:///r.db") == ("sqlite:///env.db", "sqlite:///r.db")
    # the environment's registry belongs to the environment's tracking store, not to another store given
    assert mlflow_store.resolve_uris("sqlite:///a.db") == ("sqlite:///a.db", "sqlite:///a.db")
    monkeypatch.delenv(mlflow_store.TRACKING_URI_ENV)
    assert mlflow_store.resolve_uris() == (default, "sqlite:///env-registry.db")
    assert mlflow_store.resolve_uris(default) == (default, "sqlite:///env-registry.db")
    assert mlflow_store.resolve_uris("sqlite:///a.db") == ("sqlite:///a.db", "sqlite:///a.db")


def test_a_registry_exported_for_one_store_does_not_follow_another(store, tmp_path):
    """mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI; a store used later keeps its own registry."""
    uri, _, _ = store
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert mlflow_store.resolve_uris(other) == (other, other)
    mlflow_store.use_store(other)
    assert mlflow_store.resolve_uris(uri) == (uri, uri)


def test_one_client_per_store_and_use_store_points_mlflow_at_it(store, tmp_path):
    uri, client, _ = store
    assert mlflow_store.client_for(uri) is client is mlflow_store.client_for(uri, uri)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert mlflow_store.client_for(other) is not client
    assert mlflow.get_tracking_uri() == uri, "client_for leaves the process-wide URIs alone"
    assert mlflow_store.use_store(other) is mlflow_store.client_for(other)
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (other, other)


def test_the_model_behind_an_alias_and_a_version_loads_back_exactly(store, tmp_path):
    uri, client, experiment = store
    models = [_tiny_model(seed) for seed in (1, 2)]
    rows = models[0][1].head(50)
    smoke = rows.head(3).to_dict("records")
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHAMPION) is None, "nothing registered yet"
    registered = [
        _log_and_register(client, experiment, model, tmp_path / f"v{i}", smoke) for i, (model, _) in enumerate(models)
    ]
    assert [v for v, _ in registered] == ["1", "2"]
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHAMPION) is None, "no champion alias yet"
    client.set_registered_model_alias(NAME, mlflow_store.CHAMPION, "2")
    client.set_registered_model_alias(NAME, mlflow_store.CHALLENGER, "1")

    # the lookups read the given store, whichever store the process points MLflow at
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    expected = [model.predict(rows) for model, _ in models]
    assert not np.array_equal(expected[0], expected[1])
    version = mlflow_store.version_of_alias(mlflow_store.client_for(uri), NAME, mlflow_store.CHAMPION)
    champion = mlflow_store.load_version(mlflow_store.client_for(uri), NAME, version)
    assert version == "2" and champion.manifest["version_seed"] == 2
    assert np.array_equal(champion.predict(rows), expected[1])
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHAMPION) == "2"
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.PREVIOUS) is None
    assert mlflow_store.version_of_alias(client, "never-registered", mlflow_store.CHAMPION) is None
    assert mlflow_store.run_of(client, NAME, "1") == registered[0][1]
    assert np.array_equal(mlflow_store.load_version(client, NAME, "1").predict(rows), expected[0])
    assert np.array_equal(mlflow_store.load_model(registered[0][1], uri).predict(rows), expected[0])
    challenger = mlflow_store.version_of_alias(client, NAME, mlflow_store.CHALLENGER)
    assert challenger == "1" and np.array_equal(
        mlflow_store.load_version(client, NAME, challenger).predict(rows), expected[0]
    )
    folder = mlflow_store.download_model_files(registered[1][1], uri)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.txt"]
    loaded = mlflow_store.load_json_artifact(registered[1][1], mlflow_store.SMOKE_ROWS, uri)
    assert loaded == {"rows": smoke}
    assert np.array_equal(Registry(client, NAME).model("2").predict(rows), expected[1])


def test_a_gated_alias_names_only_a_version_that_passed_its_gates(store, tmp_path):
    _uri, client, experiment = store
    model, _frame = _tiny_model(3)
    version, _ = _log_and_register(client, experiment, model, tmp_path, [])
    client.set_registered_model_alias(NAME, mlflow_store.CHALLENGER, version)
    registry = Registry(client, NAME)
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHALLENGER) == version
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHALLENGER, gated=True) is None
    registry.mark_gates(version, passed=False)
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHALLENGER, gated=True) is None
    registry.mark_gates(version, passed=True)
    assert mlflow_store.version_of_alias(client, NAME, mlflow_store.CHALLENGER, gated=True) == version


def test_the_artifact_names_are_the_ones_training_logs():
    assert (mlflow_store.MODEL_FILES, mlflow_store.SMOKE_ROWS, mlflow_store.REFERENCE_PROFILE) == (
        "model_files",
        "smoke_rows.json",
        "reference_profile.json",
    )
    assert (
        mlflow_store.MODEL_CARD,
        mlflow_store.GATE_RESULTS,
        mlflow_store.DATA_VERSIONS,
        mlflow_store.TUNING_TRIALS,
        mlflow_store.FEATURE_ATTRIBUTIONS,
        mlflow_store.SLICES,
    ) == (
        "model_card.md",
        "gates.json",
        "data_versions.json",
        "tuning_trials.json",
        "feature_attributions.json",
        "slices.csv",
    )
    assert mlflow_store.plot_artifact("curves") == "plots/curves.png"
