"""The HTTP endpoint of one model: a small ASGI app, no web framework, no Dagster.

    POST /v1/models/<model>/predict   {"instances": [...]} or {"dataframe_split": ...}; "explain": true adds
                                      each row's top feature contributions (TreeSHAP, about 2x the scoring cost)
    GET  /v1/models/<model>           version, features and types, training window, metrics
    GET  /health  /ready  /metrics    liveness, model loaded, Prometheus text

Requests read the current model slot once, so every response is answered (and logged) by exactly one version,
even while a reload swaps the slot. The response is sent only after its prediction-log row is on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
import uuid
from dataclasses import dataclass, field

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ml_platform.serving.loader import LoadedModel
from ml_platform.serving.prediction_log import PredictionLog
from ml_platform.serving.validation import RequestError, Schema, instances_of, validate_rows

log = logging.getLogger("ml_platform.serving")
TOKEN_ENV = "ML_PLATFORM_API_TOKEN"


@dataclass
class ServeConfig:
    model: str
    log_path: str
    max_rows: int = 1000
    max_body_bytes: int = 1_000_000
    reload_interval_s: float = 5.0
    rollout_mode: str = "none"       # none | shadow | canary
    canary_fraction: float = 0.1
    rollout_key: str | None = None   # a feature whose value makes canary routing sticky
    previous_window_s: float = 0.0   # score `previous` beside a champion this new (seconds since promotion)
    token: str | None = field(default_factory=lambda: os.environ.get(TOKEN_ENV) or None)


@dataclass(frozen=True)
class Slot:
    """What answers requests right now: the champion; the challenger when a rollout is on; and, otherwise,
    the previous champion while the champion is new (scored beside it and logged, never returned)."""

    champion: LoadedModel | None
    challenger: LoadedModel | None = None
    schema: Schema | None = None
    previous: LoadedModel | None = None


class ServingApp:
    def __init__(self, config: ServeConfig, source):
        self.config = config
        self.source = source
        self.slot = Slot(None)
        self.prediction_log: PredictionLog | None = None
        self._tasks: list[asyncio.Task] = []
        self.metrics = CollectorRegistry()
        self.requests = Counter("ml_platform_requests", "HTTP requests", ["route", "code"], registry=self.metrics)
        self.errors = Counter("ml_platform_errors", "Failed requests by kind", ["kind"], registry=self.metrics)
        self.predictions = Counter("ml_platform_predictions", "Rows scored", ["version", "role"],
                                   registry=self.metrics)
        self.latency = Histogram("ml_platform_request_latency_seconds", "Predict latency", ["route"],
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5),
                                 registry=self.metrics)
        self._predict_path = f"/v1/models/{config.model}/predict"
        self._info_path = f"/v1/models/{config.model}"

    # --- lifecycle -------------------------------------------------------------------------------------

    async def startup(self) -> None:
        self.prediction_log = PredictionLog(self.config.log_path)
        await self.reload()
        self._tasks.append(asyncio.create_task(self._reload_forever()))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    async def reload(self) -> bool:
        """Load whatever the aliases point to now; swap the slot only when something changed."""
        try:
            champion_version = await asyncio.to_thread(self.source.version, "champion")
            # live traffic reaches a challenger only once it has passed its offline gates
            challenger_version = (await asyncio.to_thread(self.source.version, "challenger", True)
                                  if self.config.rollout_mode != "none" else None)
            previous_version = (await asyncio.to_thread(self.source.previous_beside, champion_version,
                                                        self.config.previous_window_s)
                                if challenger_version is None and self.config.previous_window_s > 0 else None)
        except Exception as error:  # the registry is down: keep serving what is loaded
            log.warning("registry not reachable, keeping the loaded model: %s", error)
            return False
        current = self.slot
        changed = (champion_version != (current.champion.version if current.champion else None)
                   or challenger_version != (current.challenger.version if current.challenger else None)
                   or previous_version != (current.previous.version if current.previous else None))
        if not changed or champion_version is None:
            return False
        champion = (current.champion if current.champion and current.champion.version == champion_version
                    else await asyncio.to_thread(self.source.load, champion_version))
        loaded = [m for m in (current.champion, current.challenger, current.previous) if m is not None]

        async def load(version: str | None) -> LoadedModel | None:
            if not version or version == champion_version:
                return None
            reuse = next((m for m in loaded if m.version == version), None)
            return reuse or await asyncio.to_thread(self.source.load, version)

        challenger, previous = await load(challenger_version), await load(previous_version)
        self.slot = Slot(champion, challenger, Schema.of(champion.model), previous)
        log.info("serving %s v%s%s%s", self.config.model, champion.version,
                 f" with challenger v{challenger.version} ({self.config.rollout_mode})" if challenger else "",
                 f", previous v{previous.version} scored beside it" if previous else "")
        return True

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            try:
                await self.reload()
            except Exception as error:  # a broken new version never takes the endpoint down
                log.exception("reload failed, keeping the loaded model: %s", error)

    # --- ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == self._predict_path:
                if method != "POST":
                    await self._json(send, 405, {"error": "use POST"}, "predict")
                    return
                await self._predict(scope, receive, send)
            elif method != "GET":
                await self._json(send, 405 if path in ("/health", "/ready", "/metrics", self._info_path)
                                 else 404, {"error": f"no route {method} {path}"}, "other")
            elif path == "/health":
                await self._json(send, 200, {"status": "ok"}, "health")
            elif path == "/ready":
                ready = self.slot.champion is not None
                await self._json(send, 200 if ready else 503,
                                 {"ready": ready, "version": self.slot.champion.version if ready else None}, "ready")
            elif path == "/metrics":
                await self._send(send, 200, generate_latest(self.metrics), CONTENT_TYPE_LATEST.encode())
            elif path == self._info_path:
                if not self._authorized(scope):
                    await self._json(send, 401, {"error": "missing or wrong bearer token"}, "info")
                    return
                await self._json(send, *self._info(), "info")
            else:
                await self._json(send, 404, {"error": f"no route {method} {path}"}, "other")
        except Exception as error:  # a bug must still answer, and be counted
            log.exception("unhandled error on %s %s", method, path)
            self.errors.labels("internal").inc()
            await self._json(send, 500, {"error": f"internal error: {type(error).__name__}"}, "error")

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- routes ----------------------------------------------------------------------------------------

    async def _predict(self, scope, receive, send) -> None:
        started = time.perf_counter()
        arrived = time.time()
        request_id = uuid.uuid4().hex
        try:
            if not self._authorized(scope):
                raise RequestError(401, [{"field": "authorization", "error": "missing or wrong bearer token"}])
            slot = self.slot
            if slot.champion is None:
                raise RequestError(503, [{"field": "model", "error": "no model loaded yet"}])
            body = await self._body(scope, receive)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                raise RequestError(400, [{"field": "body", "error": f"malformed JSON: {error}"}]) from None
            rows, explain = instances_of(payload, self.config.max_rows)
            validate_rows(rows, slot.schema)
        except RequestError as error:
            self.errors.labels(_kind(error.status)).inc()
            await self._json(send, error.status, {"error": "bad request" if error.status < 500 else "unavailable",
                                                  "errors": error.errors, "request_id": request_id}, "predict")
            return
        answer, shadow, routed = self._route(slot, rows)
        outputs = answer.model.predict_records(rows)
        response = {"predictions": outputs.tolist(), "model": self.config.model, "version": answer.version,
                    "request_id": request_id}
        if explain:
            response["explanations"] = answer.model.explain_records(rows)
        shadow_outputs = None
        if shadow is not None:
            shadow_outputs = shadow.model.predict_records(rows).tolist()
            self.predictions.labels(shadow.version, "shadow").inc(len(rows))
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            await self.prediction_log.append((
                request_id, arrived, self.config.model, answer.version, len(rows), orjson.dumps(rows).decode(),
                orjson.dumps(response["predictions"]).decode(), latency_ms,
                shadow.version if shadow else None,
                orjson.dumps(shadow_outputs).decode() if shadow_outputs is not None else None, routed))
        except Exception as error:  # not logged means not answered: the promise of the log
            log.error("prediction log write failed: %s", error)
            self.errors.labels("log").inc()
            await self._json(send, 503, {"error": "prediction log unavailable", "request_id": request_id},
                             "predict")
            return
        self.predictions.labels(answer.version, "answer").inc(len(rows))
        self.latency.labels("predict").observe(time.perf_counter() - started)
        await self._json(send, 200, response, "predict")

    def _route(self, slot: Slot, rows: list[dict]):
        """(answering model, model scored beside it for the log, route). In shadow and canary alike the
        champion and the challenger both score the rows they are compared on."""
        challenger = slot.challenger
        if challenger is None or self.config.rollout_mode == "none":
            return slot.champion, slot.previous, "champion"
        if self.config.rollout_mode == "shadow":
            return slot.champion, challenger, "champion"
        key = str(rows[0].get(self.config.rollout_key)) if self.config.rollout_key else uuid.uuid4().hex
        bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2 ** 64
        if bucket < self.config.canary_fraction:  # the champion scores these rows too: a paired comparison
            return challenger, slot.champion, "canary"
        return slot.champion, None, "champion"

    def _info(self) -> tuple[int, dict]:
        slot = self.slot
        if slot.champion is None:
            return 503, {"error": "no model loaded yet"}
        manifest = slot.champion.model.manifest
        return 200, {
            "model": self.config.model, "version": slot.champion.version, "task": manifest.get("task"),
            "target": manifest.get("target"), "features": slot.schema.describe(),
            "training_window": manifest.get("window", {}),
            "metrics": manifest.get("metrics", {}), "spec_digest": manifest.get("spec_digest"),
            "challenger": slot.challenger.version if slot.challenger else None,
            "previous_scored_beside": slot.previous.version if slot.previous else None,
            "rollout": self.config.rollout_mode}

    # --- plumbing --------------------------------------------------------------------------------------

    def _authorized(self, scope) -> bool:
        if not self.config.token:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                expected = f"Bearer {self.config.token}".encode()
                return hmac.compare_digest(value, expected)
        return False

    async def _body(self, scope, receive) -> bytes:
        limit = self.config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise RequestError(413, [{"field": "body", "error": f"{int(value)} bytes; at most {limit}"}])
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, [{"field": "body", "error": "client disconnected"}])
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, [{"field": "body", "error": f"more than {limit} bytes"}])
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _json(self, send, status: int, payload: dict, route: str) -> None:
        self.requests.labels(route, str(status)).inc()
        await self._send(send, status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
                         b"application/json")

    @staticmethod
    async def _send(send, status: int, body: bytes, content_type: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _kind(status: int) -> str:
    return {400: "malformed", 401: "unauthorized", 413: "too_large", 422: "invalid", 503: "unavailable"}.get(
        status, str(status))
