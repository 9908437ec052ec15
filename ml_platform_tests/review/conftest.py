"""The review tests share one production home: the wiring tests' stored flight weeks (a real data-layer
backfill, once per session) and a champion trained on them by a real retrain."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec
from ml_platform_tests.conftest import _write_spec
from ml_platform_tests.defs.conftest import data_home  # noqa: F401
from ml_platform_tests.defs.helpers import _partitions, _retrain

# Fast training (few rounds); early 2013 winter weeks have a wide gap across origins, as in the wiring tests.
FAST = {
    "training.num_boost_round": 60,
    "training.early_stopping_rounds": 10,
    "gates.fairness": {"group": "origin", "max_gap": 0.5},
}
PARAMS = {"learning_rate": 0.05, "num_leaves": 63, "min_data_in_leaf": 50, "feature_fraction": 0.8}


@dataclass
class Production:
    home: Path
    spec_file: Path  # the champion's spec
    base: Path  # the data home's spec, the base of every head spec

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def storage(self) -> str:
        return str(self.home / "storage")

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


@pytest.fixture(scope="session")
def production(data_home, tmp_path_factory) -> Production:  # noqa: F811 - the fixture imported above
    """A production home with champion v1 of flight_delay, from a real retrain of the first weekly partition."""
    _root, spec_file, shared = data_home
    base = tmp_path_factory.mktemp("production")
    home = base / "home"
    shutil.copytree(shared, home)
    champion_spec = _write_spec(base / "specs", FAST, base=spec_file)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_PLATFORM_HOME", str(home))
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            patch.delenv(variable, raising=False)
        defs = build_definitions([load_spec(champion_spec)])
        (base / "dagster").mkdir()
        with dg.DagsterInstance.local_temp(str(base / "dagster")) as instance:
            result = _retrain(defs, instance, _partitions(defs)[0])
            assert result.success
    made = Production(home, champion_spec, spec_file)
    aliases = made.client().get_registered_model("flight_delay").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1"}
    return made
