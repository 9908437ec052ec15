"""Shared by the Dagster-wiring tests: real flight weeks stored once per session, and a fresh platform home
(own MLflow store and registry) per test, so registries never leak between tests."""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta

import dagster as dg
import pytest

from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec

OFFSET_WEEKS = 600


@pytest.fixture(scope="session")
def data_home(tmp_path_factory):
    """Features for the first four training windows of the replay (a real data-layer backfill)."""
    import yaml

    from ml_platform.spec import BUNDLED_SPECS

    root = tmp_path_factory.mktemp("training")
    spec_file = root / "flight_delay.yaml"
    data = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
    data["source"]["offset_weeks"] = OFFSET_WEEKS
    spec_file.write_text(yaml.safe_dump(data))
    home = root / "data_home"
    previous = os.environ.get("ML_PLATFORM_HOME")
    os.environ["ML_PLATFORM_HOME"] = str(home)
    try:
        defs = build_definitions([load_spec(spec_file)])
        first = (date(2013, 1, 1) + timedelta(weeks=OFFSET_WEEKS)).isoformat()
        last = (date(2013, 1, 1) + timedelta(weeks=OFFSET_WEEKS, days=56 + 21 - 1)).isoformat()
        dagster_home = root / "dagster_data"
        dagster_home.mkdir()
        with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(["flight_delay", "raw"]), dg.AssetKey(["flight_delay", "features"])],
                tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            )
            assert result.success
    finally:
        if previous is None:
            os.environ.pop("ML_PLATFORM_HOME", None)
        else:
            os.environ["ML_PLATFORM_HOME"] = previous
    return root, spec_file, home


@pytest.fixture
def platform(data_home, tmp_path, monkeypatch, write_spec):
    """A fresh home (own MLflow store) that shares the module's stored features; `make(overrides)` → defs."""
    _root, spec_file, shared = data_home
    home = tmp_path / "home"
    shutil.copytree(shared, home)
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)

    def make(overrides: dict | None = None) -> dg.Definitions:
        # Early 2013 winter weeks have a wide gap across origins; these tests are about the mechanics.
        overrides = {"gates.fairness": {"group": "origin", "max_gap": 0.5}, **(overrides or {})}
        return build_definitions([load_spec(write_spec(tmp_path / "specs", overrides, base=spec_file))])

    return make, home
