"""LightGBM's data-parallel fit on Dask workers, with every worker's rows and rank fixed by rule (the same rows
on the same number of workers give the same model bytes) and the bins of one shared sample (`binning`).
`dask_training` decides what to fit (rows, rounds, parameters); this module fits it."""

from __future__ import annotations

import re
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml_platform.core import binning
from ml_platform.core.dask_cluster import killed_workers_explained, watched, workers_of
from ml_platform.core.labels import UNKNOWN, Labels
from ml_platform.core.model import FeatureEncoder
from ml_platform.core.training import without_rounds

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

LABEL = "__label__"


def codes(values: pd.Series, classes: list[Any] | None) -> np.ndarray:
    """The target as LightGBM labels: class codes (-1 outside the classes), or the value for regression."""
    if classes is None:
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return Labels("multiclass", tuple(classes)).encode(values)  # the codes do not depend on the task


def _encoded(part: pd.DataFrame, encoder: FeatureEncoder, target: str, classes: list[Any] | None) -> pd.DataFrame:
    """A partition as LightGBM's float matrix plus the label (class index, or the value for regression)."""
    labels = codes(part[target], classes)
    if classes is not None:  # as the local engine: a label outside the classes is not trained on
        part, labels = part[labels != UNKNOWN], labels[labels != UNKNOWN]
    frame = pd.DataFrame(encoder.transform(part), columns=encoder.names)
    return frame.assign(**{LABEL: labels})


def fit_on_workers(
    client: Client,
    target: str,
    params: dict[str, Any],
    rounds: int,
    rows: dd.DataFrame,
    encoder: FeatureEncoder,
    classes: list[Any] | None,
) -> lgb.Booster:
    """LightGBM's data-parallel training on the workers, with every worker's rows and rank fixed by rule: the
    i-th partition is encoded and kept on the (i mod n)-th worker (workers in address order), that worker is rank
    i mod n, and it trains on its partitions in order. Rank and row order decide LightGBM's distributed bin
    boundaries and the order histograms are summed in; lightgbm.dask leaves both to where the scheduler put the
    parts and to set order, so the same rows gave different trees run after run. Here the same data and settings
    on the same number of workers give the same model bytes (which machine is which does not matter).
    Watched: a worker lost mid-training fails the fit at once instead of leaving the others waiting for it."""
    from urllib.parse import urlparse

    meta = pd.DataFrame({name: pd.Series(dtype=np.float64) for name in [*encoder.names, LABEL]})
    parts = rows.map_partitions(_encoded, encoder, target, classes, meta=meta).to_delayed()
    workers = _workers_in_order(client)[: len(parts)]
    encoded = [
        client.compute(part, workers=[workers[i % len(workers)]], allow_other_workers=False)
        for i, part in enumerate(parts)
    ]
    sample = client.scatter(_bin_sample(client, encoded, params), broadcast=True)
    held = {w: client.submit(_HeldPort, workers=[w], allow_other_workers=False, pure=False) for w in workers}
    ports: dict[str, int] = client.gather(
        {w: client.submit(attrgetter("port"), held[w], workers=[w], allow_other_workers=False) for w in workers}
    )
    network = {
        **without_rounds(params),
        "tree_learner": "data",
        "pre_partition": True,
        "num_machines": len(workers),
        "machines": ",".join(f"{urlparse(worker).hostname}:{ports[worker]}" for worker in workers),
    }
    fits = [
        client.submit(
            _fit_rank,
            encoded[rank :: len(workers)],
            sample,
            held[worker],
            {**network, "local_listen_port": ports[worker]},
            rounds,
            encoder.names,
            encoder.categorical_columns,
            rank == 0,
            workers=[worker],
            allow_other_workers=False,
            pure=False,
        )
        for rank, worker in enumerate(workers)
    ]
    texts = watched(client, lambda: killed_workers_explained(client.gather, fits))
    return _without_addresses(lgb.Booster(model_str=texts[0]))


def _workers_in_order(client: Client) -> list[str]:
    """The cluster's workers in address order, after waiting for the first of a cluster still starting (or
    restarting) its workers."""
    workers = workers_of(client)
    if not workers:
        client.wait_for_workers(1, timeout=120)
        workers = workers_of(client)
    return sorted(workers)


class _HeldPort:
    """A port bound on a worker and held there, so no other process takes it, until its rank releases it to
    LightGBM's network just before joining (as lightgbm.dask holds its ports)."""

    def __init__(self) -> None:
        import socket

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("", 0))
        self.port = int(self.socket.getsockname()[1])

    def release(self) -> None:
        self.socket.close()


def _bin_sample(client: Client, encoded: list[Any], params: dict[str, Any]) -> pd.DataFrame:
    """`binning`'s sample of the encoded partitions (each a future on its worker, in training-set order): every
    `step`-th row counted across the partitions, as the local engine takes every `step`-th row of its frame."""
    sizes: list[int] = client.gather([client.submit(len, part) for part in encoded])
    step = binning.sample_step(sum(sizes), params)
    starts = np.cumsum([0, *sizes[:-1]])
    picked = [
        client.submit(_every, part, int(-start % step), step) for part, start in zip(encoded, starts, strict=True)
    ]
    chosen: list[pd.DataFrame] = client.gather(picked)
    return pd.concat(chosen, ignore_index=True)


def _every(part: pd.DataFrame, first: int, step: int) -> pd.DataFrame:
    return part.iloc[first::step]


def _fit_rank(
    parts: list[pd.DataFrame],
    sample: pd.DataFrame,
    held: _HeldPort,
    params: dict[str, Any],
    rounds: int,
    names: list[str],
    categorical: list[int],
    keep: bool,
) -> str | None:
    """One rank of a data-parallel fit, on its worker: its partitions in order, binned from the shared sample,
    LightGBM's network joined through `params`; the model's text from rank 0 (every rank ends with the same
    trees)."""
    bins = binning.reference(sample[names], names, categorical, params)
    frame = pd.concat(parts, ignore_index=True)
    dataset = lgb.Dataset(
        frame[names], frame[LABEL], categorical_feature=categorical, reference=bins, free_raw_data=True
    )
    held.release()
    booster = lgb.train(params, dataset, num_boost_round=rounds)
    try:
        return booster.model_to_string() if keep else None
    finally:
        booster.free_network()


def _without_addresses(booster: lgb.Booster) -> lgb.Booster:
    """The booster with the cluster's network settings blanked in its saved parameters: the listening ports are
    picked per fit and say nothing about the model, but they would make every fit's bytes differ."""
    text = re.sub(
        r"^\[(machines|local_listen_port): [^\]]*\]$", r"[\1: ]", booster.model_to_string(), flags=re.MULTILINE
    )
    return lgb.Booster(model_str=text)
