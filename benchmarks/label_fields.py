"""What a classifier's label fields cost a predict request, beside what scoring it costs, in process.

Trains two real models on 14 replayed days of 2013 NYC flights (features as the pipeline builds them): a binary
one (arrives more than 15 minutes late, a 0/1 target) and a multiclass one on text labels (the departure
airport: EWR, JFK, LGA). For requests of 1 and 100 rows (the first held-out rows, as a client sends them) it
times, in µs of this thread's CPU per request, the best of 5 slices:

- `predict_records`: `Model.predict_records`, the endpoint's scoring (the peer);
- `label_fields`: `Labels.response` on those scores, the work the endpoint adds for `labels` (and multiclass
  `probabilities` by class name);
- `body_before` / `body_after`: `orjson.dumps` of the v1 answer without and with the label fields.

The data is pinned (2013-05-01 → 2013-05-14, the 2013 calendar itself).

Run: `.venv/bin/python benchmarks/label_fields.py [--quick]`. Each line is a figure in the contract's form
(benchmarks/contract.py), one per case `<task>/<rows>`: the label fields' µs, the peer `predict_records` measured
in the same run, their ratio. `--quick` (the guard's form): a tenth of the calls per slice; the same figures.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
from contract import figure, quick_option

from ml_platform.core.features import build_features
from ml_platform.core.sources import nycflights13
from ml_platform.core.training import split_by_time, train
from ml_platform.spec import BUNDLED_SPECS, ModelSpec, load_spec


def _spec(task: str) -> ModelSpec:
    data = load_spec(BUNDLED_SPECS / "flight_delay.yaml").model_dump(by_alias=True, exclude={"path"})
    data["training"].update(
        window_days=14, validation_days=3, test_days=3, num_boost_round=100, early_stopping_rounds=10
    )
    if task == "multiclass":
        data.update(task="multiclass", target={"name": "airport", "column": "origin"})
        data["features"]["categorical"] = [c for c in data["features"]["categorical"] if c != "origin"]
        data["gates"]["metric"] = data["monitoring"]["performance"]["metric"] = "macro_f1"
    return ModelSpec.model_validate(data)


def _cpu_us(work, number: int) -> float:
    """CPU µs of this thread per call of `work`, the best of 5 slices of `number` calls."""
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        for _ in range(number):
            work()
        best = min(best, (time.thread_time() - started) / number)
    return best * 1e6


def _records(frame: pd.DataFrame, names: list[str]) -> list[dict]:
    rows = frame[names].astype(object)
    return rows.where(rows.notna(), None).to_dict("records")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    quick_option(parser, "a tenth of the calls per timed slice")
    quick = parser.parse_args().quick
    raw = nycflights13.load(nycflights13.Replay(offset_days=0), datetime(2013, 5, 1), datetime(2013, 5, 15))
    for task in ("binary", "multiclass"):
        spec = _spec(task)
        split = split_by_time(build_features(raw, spec)[0], spec)
        model = train(spec, split).model
        labels = model.labels
        assert labels is not None, "a classifier's model has labels"
        for rows in (1, 100):
            records = _records(split.test.head(rows), model.encoder.names)
            scores = model.predict_records(records)
            number = (2000 if rows == 1 else 200) // (10 if quick else 1)
            predict = _cpu_us(lambda: model.predict_records(records), number)
            fields = _cpu_us(lambda: labels.response(scores), number)
            before: dict[str, Any] = {
                "predictions": scores.tolist(),
                "model": spec.name,
                "version": "1",
                "request_id": "r" * 32,
            }
            after = {**before, **labels.response(scores)}
            body_before = _cpu_us(lambda: orjson.dumps(before), number)
            body_after = _cpu_us(lambda: orjson.dumps(after), number)
            figure(
                "label_fields_us",
                case=f"{task}/{rows}",
                value=fields,
                unit="us",
                peer="predict_records_us (the endpoint's scoring of the same rows)",
                peer_value=predict,
                better="lower",
                goal=0.25,  # the label fields cost at most a quarter of the scoring
                task=task,
                rows=rows,
                calls_per_slice=number,
                body_us={"before": round(body_before, 2), "after": round(body_after, 2)},
                body_bytes={"before": len(orjson.dumps(before)), "after": len(orjson.dumps(after))},
                classes=[str(c) for c in model.classes],
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
