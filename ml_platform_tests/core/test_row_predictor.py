"""The single-row scorer gives Booster.predict's numbers exactly, for every task, from any thread."""

from __future__ import annotations

import threading

import lightgbm as lgb
import numpy as np
import pytest

from ml_platform.core.row_predictor import RowPredictor


def _booster(objective: str, **params) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 6))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the trees' default branches
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2
    y = {"binary": signal > 0.5, "regression": signal, "multiclass": np.digitize(signal, [0.0, 1.0])}[objective].astype(
        float
    )
    data = lgb.Dataset(x, y, categorical_feature=[5] if objective == "binary" else "auto")
    booster = lgb.train({"objective": objective, "verbose": -1, "num_leaves": 15, **params}, data, num_boost_round=30)
    return lgb.Booster(model_str=booster.model_to_string()), x  # as served: loaded from its text


@pytest.mark.parametrize("objective, params", [("binary", {}), ("regression", {}), ("multiclass", {"num_class": 3})])
def test_the_same_numbers_as_booster_predict(objective, params):
    booster, x = _booster(objective, **params)
    predictor = RowPredictor(booster, x.shape[1])
    expected = booster.predict(x[:500], num_threads=1)
    got = np.concatenate([predictor.predict(x[i : min(i + 7, 500)]) for i in range(0, 500, 7)])
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_each_thread_scores_with_its_own_handle():
    booster, x = _booster("binary")
    predictor = RowPredictor(booster, x.shape[1])
    expected = booster.predict(x, num_threads=1)
    results: dict[int, np.ndarray] = {}

    def score(k: int) -> None:
        results[k] = np.concatenate([predictor.predict(x[i : i + 1]) for i in range(len(x))])

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(result, expected) for result in results.values())
