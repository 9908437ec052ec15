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
