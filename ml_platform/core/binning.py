"""The rows LightGBM takes each feature's bin boundaries from: the same rows on either engine.

LightGBM bins every feature before it grows a tree, from a sample of the fitted rows (`bin_construct_sample_cnt`,
200,000 by default): a random one on one machine, and in a data-parallel fit each rank's own rows decide the bins
of the features it is given. So a local and a Dask model of one training set split on slightly different values,
and a validation loss that is flat for tens of rounds had its minimum rounds apart (3M rows: 51 rounds locally, 79
on Dask; held-out AUC 0.0051 apart). Both engines take the bins from one sample instead: every `step`-th fitted row
in training-set order (an order both engines share), built into a reference Dataset whose bins every training
Dataset of the fit takes. What is left between the engines is inside LightGBM: its data-parallel learner knows a
leaf's rows only as estimated from the leaf's hessian sum, so row-count limits can admit different splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

SAMPLE_ROWS = 200_000  # LightGBM's default bin_construct_sample_cnt
_SAMPLE_PARAMS = ("bin_construct_sample_cnt", "subsample_for_bin")  # its name and alias


def sample_step(rows: int, params: Mapping[str, Any]) -> int:
    """The bin sample takes one fitted row in every `step`: as many rows as LightGBM would sample (the spec's
    `bin_construct_sample_cnt`, else 200,000), spread evenly over the window. 1 (every row) while they fit."""
    size = next((int(params[name]) for name in _SAMPLE_PARAMS if name in params), SAMPLE_ROWS)
    return max(1, -(-rows // max(size, 1)))


def reference(
    sample: pd.DataFrame | np.ndarray, names: list[str], categorical: list[int], params: Mapping[str, Any]
) -> lgb.Dataset:
    """A constructed Dataset of the sample's bins alone: a training Dataset built with it as `reference` takes
    these bins instead of finding its own. Constructed here, before a data-parallel fit joins LightGBM's
    network, so the bins are found from the sample alone and never exchanged between ranks."""
    return lgb.Dataset(
        sample, feature_name=names, categorical_feature=categorical, params=dict(params), free_raw_data=True
    ).construct()
