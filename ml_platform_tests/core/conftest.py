"""Real flight days and one real model, built once for the unit tests of the pure ML modules."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from ml_platform.core.features import build_features
from ml_platform.core.model import Model
from ml_platform.core.sources import nycflights13
from ml_platform.core.training import Split, split_by_time, train
from ml_platform.spec import BUNDLED_SPECS, ModelSpec, load_spec


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return load_spec(BUNDLED_SPECS / "flight_delay.yaml")


@pytest.fixture(scope="session")
def features(spec) -> pd.DataFrame:
    """56 real days, 2013-05-01 to 2013-06-25: exactly the bundled spec's window."""
    raw = nycflights13.load(nycflights13.Replay(offset_days=0), datetime(2013, 5, 1), datetime(2013, 6, 26))
    return build_features(raw, spec)[0]


@pytest.fixture(scope="session")
def split(features, spec) -> Split:
    return split_by_time(features, spec)


@pytest.fixture(scope="session")
def model(spec, split) -> Model:
    return train(spec, split).model


@pytest.fixture
def store(tmp_path):
    """A real local MLflow store (SQLite and a folder of artifacts) with one experiment: (client, experiment id)."""
    from ml_platform.core.mlflow_store import use_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = use_store(uri, uri)
    return client, client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())


@pytest.fixture(scope="session")
def training_set(features, spec) -> pd.DataFrame:
    """The spec's 56-day window as the training stage stores it (rows and their split)."""
    from ml_platform.core.training_run import build_training_set

    return build_training_set(features, spec, sorted(features[spec.timestamp].dt.strftime("%Y-%m-%d").unique())).frame


@pytest.fixture
def logged_version(spec, model, store):
    """`logged_version()`: the session's model logged to a new run exactly as training logs it, and registered
    as the next version: (version, run id). For tests about what happens after training."""
    import mlflow

    from ml_platform.core.registry import Registry
    from ml_platform.core.training_run import log_model_files

    client, experiment = store

    def make() -> tuple[str, str]:
        with mlflow.start_run(experiment_id=experiment) as run:
            model_uri, _ = log_model_files(model)
        return Registry(client, spec.name).register(model_uri, run.info.run_id, tags={}), run.info.run_id

    return make
