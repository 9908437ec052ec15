"""The floor for the serving benchmark: the least an endpoint can do to score one JSON row with our model.

A bare ASGI app (no framework): read the body, `orjson.loads` it, turn each of its `instances` into the row
LightGBM expects (numeric features as floats, categorical ones as the code of their level in the manifest, NaN
for missing or never-seen values: what `FeatureEncoder.transform_records` computes), call `Booster.predict`
(one thread) and answer `{"predictions": [...]}`. No validation, no prediction log, no metrics, no routes (every
request is a prediction); lifespan events are acknowledged. `benchmarks/serving.py` serves it on Granian exactly
like our endpoint (ASGI, uvloop, HTTP/1, one worker):

    SERVING_FLOOR_MODEL=<folder with model.txt and manifest.json> \\
        granian --interface asgi --loop uvloop --http 1 --no-ws --factory \\
        --working-dir benchmarks serving_floor:create_app
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson

MODEL_ENV = "SERVING_FLOOR_MODEL"
HEADERS = [(b"content-type", b"application/json")]


def create_app(folder: str | Path | None = None):
    """The ASGI app for the model folder `folder` (default: the folder in SERVING_FLOOR_MODEL)."""
    folder = Path(folder or os.environ[MODEL_ENV])
    features = json.loads((folder / "manifest.json").read_text())["features"]
    numeric, categorical = features["numeric"], features["categorical"]
    codes = [(name, {level: float(i) for i, level in enumerate(features["levels"][name])}) for name in categorical]
    width = len(numeric) + len(categorical)
    booster = lgb.Booster(model_file=str(folder / "model.txt"))

    def predict(rows: list[dict]) -> list[float]:
        matrix = np.empty((len(rows), width), dtype=np.float64)
        for r, row in enumerate(rows):
            values = matrix[r]
            for i, name in enumerate(numeric):
                value = row.get(name)
                values[i] = math.nan if value is None else value
            for j, (name, levels) in enumerate(codes, start=len(numeric)):
                value = row.get(name)
                values[j] = math.nan if value is None else levels.get(str(value), math.nan)
        return np.asarray(booster.predict(matrix, num_threads=1)).tolist()

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = orjson.dumps({"predictions": predict(orjson.loads(body)["instances"])})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app
