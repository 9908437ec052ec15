"""The HTTP endpoint of one model: a small ASGI app, no web framework, no Dagster.

    POST /v1/models/<model>/predict   {"instances": [...]} or {"dataframe_split": ...}; "explain": true adds
                                      each row's top feature contributions (TreeSHAP, about 2x the scoring cost)
    GET  /v1/models/<model>           version, features and types, training window, metrics
    GET  /openapi.json                the v1 routes described for this model's features
    GET  /health  /ready  /metrics    liveness, model loaded, Prometheus text
    Open Inference Protocol (KServe, Triton, MLServer): GET /v2, /v2/health/live, /v2/health/ready,
    /v2/models/<model>, /v2/models/<model>/ready; POST /v2/models/<model>/infer

Every predict request is validated, scored and logged the same way whichever protocol it speaks; the response
is sent only after its prediction-log row is on disk. Small requests are scored on the event loop (faster than
a thread hop); large and `explain` requests in a thread, under the scoring timeout, so health checks never wait.

Length: the routes and the one predict flow share the app's state (slot, log, limits, metrics); the pieces that
stand alone already live beside it (http, validation, protocols, openapi, slot, metrics, prediction_log).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Any

import orjson

from ml_platform.serving import openapi, v2
from ml_platform.serving.config import ServeConfig
from ml_platform.serving.http import (
    ACCEPT_ENCODING,
    Answering,
    Headers,
    Receive,
    Scope,
    Send,
    bearer_ok,
    check_json_content_type,
    cors_headers,
    decoded_body,
    encoded_slash,
    read_body,
    request_accepts_gzip,
    respond,
    respond_json,
    unauthorized_headers,
    with_headers,
)
from ml_platform.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ml_platform.serving.metrics import Metrics
from ml_platform.serving.prediction_log import LogRow, PredictionLog
from ml_platform.serving.protocols import V1, V2, Answer, Body, Explanations, Parsed, Protocol, label_fields
from ml_platform.serving.slot import RegistryState, RegistryUnreachable, Slot, next_slot, source_for
from ml_platform.serving.validation import RequestError, Row

if TYPE_CHECKING:
    import numpy as np

    from ml_platform.core.model import Model
    from ml_platform.serving.loader import LoadedModel, ModelSource
    from ml_platform.serving.prediction_log import LogPolicy

    Handler = Callable[[Answering], Awaitable[None]]  # a GET route

log = logging.getLogger("ml_platform.serving")
_VERSION = metadata.version("ml_platform")
INLINE_ROWS = 16  # up to this many rows (no explanations) are scored on the event loop: ~0.1 ms


@dataclass(slots=True)  # built per request, so not frozen (a frozen __init__ costs about 1 µs more)
class Route:
    """Which model answers a request and which is scored beside it for the log (a shadow challenger, canary's
    champion, or the previous champion while the champion is new), and the log's `routed`."""

    answer: LoadedModel
    shadow: LoadedModel | None
    routed: str  # champion | canary


@dataclass(slots=True)  # built per request, so not frozen (a frozen __init__ costs about 1 µs more)
class Scored:
    """The numbers of one request: the answering model's outputs, each row's explanations and the class each is
    about (only when asked for), and the outputs of the model scored beside it."""

    route: Route
    outputs: np.ndarray
    explanations: Explanations | None
    explained_class: list[Any] | None
    shadow_outputs: list[Any] | None


class ServingApp:
    def __init__(self, config: ServeConfig, source: ModelSource | None = None):
        self.config = config
        self.source = source if source is not None else source_for(config)
        self.slot: Slot | None = None  # None until the first model is loaded
        self.registry = RegistryState()
        self.prediction_log: PredictionLog | None = None
        self.metrics = Metrics()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        # request ids: unique per process (a random prefix made in the worker) and cheap (a counter)
        self._id_prefix, self._ids = secrets.token_hex(8), itertools.count()
        self._scorer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="score")
        model = config.model
        about = self._about_model
        self._get: dict[str, Handler] = {
            "/health": self._health,
            "/ready": self._ready,
            "/metrics": self._metrics,
            f"/v1/models/{model}": partial(about, route="info", describe=self._info),
            "/openapi.json": partial(about, route="openapi", describe=self._openapi),
            "/v2": self._v2_server,
            "/v2/health/live": self._health,
            "/v2/health/ready": self._v2_ready,
            f"/v2/models/{model}": partial(about, route="v2", describe=self._v2_metadata),
            f"/v2/models/{model}/ready": self._v2_ready,
        }
        self._post = {f"/v1/models/{model}/predict": V1, f"/v2/models/{model}/infer": V2}

    # --- lifecycle -------------------------------------------------------------------------------------

    async def startup(self) -> None:
        config = self.config
        retention = timedelta(seconds=config.log_retention_s) if config.log_retention_s else None
        self.prediction_log = PredictionLog(
            config.log_path, retention=retention, max_bytes=config.log_max_bytes, fsync=config.log_fsync
        )
        await self.reload()
        self._tasks.append(asyncio.create_task(self._reload_forever()))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._scorer.shutdown(wait=False, cancel_futures=True)
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    async def reload(self) -> bool:
        """Load whatever the aliases point to now; swap the slot only when something changed. While the registry
        cannot be reached, the loaded models keep serving and `/ready` says since when and why."""
        try:
            slot = await next_slot(self.slot, self.source, self.config, self._policy_of)
        except RegistryUnreachable as error:
            self.registry.failed(error)
            return False
        self.registry.answered()
        if slot is None:
            return False
        self.slot = slot
        return True

    def _policy_of(self, model: Model) -> LogPolicy:
        if self.prediction_log is None:
            raise RuntimeError("the prediction log is opened at startup, before the first model is loaded")
        return self.prediction_log.policy(model.manifest, self.config.log_redact)

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            try:
                await self.reload()
            except Exception as error:  # a broken new version never takes the endpoint down
                log.exception("reload failed, keeping the loaded model: %s", error)

    # --- ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        handler: Handler | None
        try:
            if encoded_slash(scope):
                await respond_json(send, 404, {"error": "no such route"}, head=method == "HEAD")
                return self.metrics.request("other", "404").inc()
            if path in self._post:
                allowed, handler = b"POST, OPTIONS", None
            elif path in self._get:
                allowed, handler = b"GET, HEAD, OPTIONS", self._get[path]
            else:
                await respond_json(send, 404, {"error": "no such route"}, head=method == "HEAD")
                return self.metrics.request("other", "404").inc()
            config = self.config
            cors = cors_headers(scope, config.cors_origins, allowed) if config.cors_origins else None
            if method == "OPTIONS":  # a CORS preflight, or a client asking what the route allows
                preflight = cors.preflight if cors is not None else ()
                return await respond(send, 204, b"", b"text/plain", [(b"allow", allowed), *preflight])
            if cors is not None:  # an allowed origin: every answer says so
                send = with_headers(send, cors.answer)
            if method.encode() not in allowed.split(b", "):
                self.metrics.request("other", "405").inc()
                return await respond_json(
                    send, 405, {"error": f"{method} is not allowed here; use {allowed.decode()}"}, [(b"allow", allowed)]
                )
            above = config.compress_above_bytes
            answering = Answering(
                scope=scope,
                send=send,
                id=f"{self._id_prefix}{next(self._ids):016x}",
                arrived=time.time(),
                started=time.perf_counter(),
                head=method == "HEAD",
                accepts_gzip=above is not None and request_accepts_gzip(scope),
                compress_above=above,
            )
            if handler is None:
                return await self._predict(answering, receive, self._post[path])
            await handler(answering)
        except Exception:  # a bug must still answer, and be counted; its details stay in the server's log
            log.exception("unhandled error on %s %s", method, path)
            self.metrics.error("internal").inc()
            await respond_json(send, 500, {"error": "internal error"}, [(b"connection", b"close")])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
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

    # --- predict (v1 and v2 alike) -----------------------------------------------------------------------

    async def _predict(self, answering: Answering, receive: Receive, protocol: Protocol) -> None:
        if self._in_flight >= self.config.max_in_flight:
            error = RequestError(
                503,
                [
                    {
                        "field": "server",
                        "error": f"{self._in_flight} requests in flight; retry after the time in Retry-After",
                    }
                ],
            )
            return await self._refuse(answering, protocol, error, "overloaded", body_read=False)
        self._in_flight += 1
        self.metrics.in_flight.inc()
        release: Callable[[], None] | None = self._release
        body_read = False
        scope = answering.scope
        try:
            if not bearer_ok(scope, self.config.token):
                raise RequestError(401, [{"field": "authorization", "error": "missing or wrong bearer token"}])
            check_json_content_type(scope)
            slot = self.slot
            if slot is None:
                raise RequestError(503, [{"field": "model", "error": "no model loaded yet"}])
            body = await read_body(scope, receive, self.config.max_body_bytes, self.config.body_timeout_s)
            body_read = True
            body = decoded_body(scope, body, self.config.max_body_bytes)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                raise RequestError(400, [{"field": "body", "error": f"malformed JSON: {str(error)[:120]}"}]) from None
            parsed = protocol.parse(payload, slot, self.config)
            scored = await self._score(slot, parsed)
            await self._answer(answering, protocol, slot, parsed, scored)
        except _ScoringTimeout as error:
            release = None  # the thread still scores; it frees its in-flight place when it ends
            await self._refuse(answering, protocol, error, "timeout", body_read)
        except RequestError as error:
            await self._refuse(answering, protocol, error, None, body_read)
        finally:
            if release is not None:
                release()

    def _release(self) -> None:
        self._in_flight -= 1
        self.metrics.in_flight.dec()

    async def _score(self, slot: Slot, parsed: Parsed) -> Scored:
        """The request's rows routed and scored; past the scoring timeout a 503."""
        rows, explain = parsed.rows, parsed.explain
        route = self._route(slot, rows)
        if len(rows) <= INLINE_ROWS and not explain:
            return _score(route, rows, False)
        loop = asyncio.get_running_loop()
        future = self._scorer.submit(_score, route, rows, explain)
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.config.scoring_timeout_s)
        except TimeoutError:
            future.cancel()  # not started yet: dropped; running: it ends on its own, then frees its slot
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
            limit = self.config.scoring_timeout_s
            raise _ScoringTimeout(503, [{"field": "scoring", "error": f"not scored within {limit:g} s"}]) from None
        return result

    async def _answer(
        self, answering: Answering, protocol: Protocol, slot: Slot, parsed: Parsed, scored: Scored
    ) -> None:
        route, rows, request_id = scored.route, parsed.rows, answering.id
        answer, shadow = route.answer, route.shadow
        predictions = scored.outputs.tolist()
        if TYPE_CHECKING:  # startup opens the log before the first model loads, so a scored request has one
            assert self.prediction_log is not None
        try:
            await self.prediction_log.append(
                LogRow(
                    request_id=request_id,
                    ts=answering.arrived,
                    model=self.config.model,
                    version=answer.version,
                    rows=len(rows),
                    features=orjson.dumps(slot.policy.view(rows)).decode(),
                    outputs=orjson.dumps(predictions).decode(),
                    latency_ms=(time.perf_counter() - answering.started) * 1000,
                    shadow_version=shadow.version if shadow else None,
                    shadow_outputs=(
                        orjson.dumps(scored.shadow_outputs).decode() if scored.shadow_outputs is not None else None
                    ),
                    routed=route.routed,
                )
            )
        except Exception as error:  # not logged means not answered: the promise of the log
            log.error("prediction log write failed: %s", error)
            self.metrics.error("log").inc()
            self.metrics.request(protocol.route, "503").inc()
            failure = protocol.failure("prediction log unavailable", request_id)
            return await answering.respond_json(503, failure, compress=True)
        self.metrics.predicted(answer.version, "answer").inc(len(rows))
        if shadow is not None:
            self.metrics.predicted(shadow.version, "shadow").inc(len(rows))
        self.metrics.latency_of(protocol.route).observe(time.perf_counter() - answering.started)
        self.metrics.request(protocol.route, "200").inc()
        body = protocol.answer(
            Answer(
                self.config.model,
                answer.version,
                predictions,
                scored.explanations,
                request_id,
                slot.champion.model.manifest.get("task"),
                label_fields(answer.model, scored.outputs, scored.explained_class),
            ),
            parsed.v2_request,
        )
        # the logged id, whatever the protocol's body says (a v2 body echoes the client's own `id`)
        await answering.respond_json(200, body, ((b"x-request-id", request_id.encode()),), compress=True)

    async def _refuse(
        self, answering: Answering, protocol: Protocol, error: RequestError, kind: str | None, body_read: bool
    ) -> None:
        """A 4xx/503 naming the field. Unread body bytes may still be on the wire: then the connection closes."""
        self.metrics.error(kind or _kind(error.status)).inc()
        self.metrics.request(protocol.route, str(error.status)).inc()
        headers: list[tuple[bytes, bytes]] = []
        if error.status == 401:
            headers += unauthorized_headers()
        if error.status == 503:
            headers.append((b"retry-after", str(max(1, round(self.config.retry_after_s))).encode()))
        if error.status == 415 and error.errors and error.errors[0].get("field") == "content-encoding":
            headers.append(ACCEPT_ENCODING)  # RFC 9110 section 15.5.16: which coding would be read
        if not body_read or error.status in (408, 413):
            headers.append((b"connection", b"close"))
        refusal = protocol.refusal(error, answering.id)
        await answering.respond_json(error.status, refusal, headers, compress=True)

    def _route(self, slot: Slot, rows: list[Row]) -> Route:
        """Which model answers and which is scored beside it for the log. In shadow and canary alike the
        champion and the challenger both score the rows they are compared on."""
        challenger = slot.challenger
        if challenger is None or self.config.rollout_mode == "none":
            return Route(slot.champion, slot.previous, "champion")
        if self.config.rollout_mode == "shadow":
            return Route(slot.champion, challenger, "champion")
        key = str(rows[0].get(self.config.rollout_key)) if self.config.rollout_key else uuid.uuid4().hex
        bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
        if bucket < self.config.canary_fraction:  # the champion scores these rows too: a paired comparison
            return Route(challenger, slot.champion, "canary")
        return Route(slot.champion, None, "champion")

    # --- read-only routes --------------------------------------------------------------------------------

    async def _health(self, answering: Answering) -> None:
        body = {"status": "ok"} if answering.scope["path"] == "/health" else {"live": True}
        await self._plain(answering, 200, body, "health")

    async def _ready(self, answering: Answering) -> None:
        slot = self.slot
        ready = slot is not None
        body = {
            "ready": ready,
            "version": slot.champion.version if slot is not None else None,
            "registry": self.registry.report(ready),
        }
        await self._plain(answering, 200 if ready else 503, body, "ready")

    async def _metrics(self, answering: Answering) -> None:
        if not bearer_ok(answering.scope, self.config.metrics_token):
            return await self._plain(
                answering, 401, {"error": "missing or wrong metrics bearer token"}, "metrics", unauthorized_headers()
            )
        self.metrics.request("metrics", "200").inc()
        await respond(answering.send, 200, self.metrics.exposition(), METRICS_CONTENT_TYPE, head=answering.head)

    async def _about_model(self, answering: Answering, route: str, describe: Callable[[Slot], Body]) -> None:
        """A route that describes the loaded model: behind the API token, 503 until a model is loaded; its
        answers may be large, so they are compressed as predict's are."""
        if not bearer_ok(answering.scope, self.config.token):
            self.metrics.error("unauthorized").inc()
            return await self._plain(
                answering, 401, {"error": "missing or wrong bearer token"}, route, unauthorized_headers(), compress=True
            )
        slot = self.slot
        if slot is None:
            return await self._plain(answering, 503, {"error": "no model loaded yet"}, route, compress=True)
        await self._plain(answering, 200, describe(slot), route, compress=True)

    def _info(self, slot: Slot) -> Body:
        return slot.describe(self.config.model, self.config.rollout_mode)

    def _openapi(self, slot: Slot) -> Body:
        besides = tuple(sorted(slot.allowed - slot.schema.features))  # the event time and key
        return openapi.document(
            self.config.model,
            slot.schema,
            max_rows=self.config.max_rows,
            unknown_fields=self.config.unknown_fields,
            allowed=besides,
        )

    def _v2_metadata(self, slot: Slot) -> Body:
        model = slot.champion.model
        return v2.model_metadata(
            self.config.model,
            slot.champion.version,
            slot.schema,
            model.manifest.get("task"),
            n_classes=len(model.classes) or None,
            labels=model.labels,
        )

    async def _v2_server(self, answering: Answering) -> None:
        await self._plain(answering, 200, {"name": "ml_platform", "version": _VERSION, "extensions": []}, "v2")

    async def _v2_ready(self, answering: Answering) -> None:
        ready = self.slot is not None
        await self._plain(answering, 200 if ready else 503, {"ready": ready}, "v2")

    async def _plain(
        self,
        answering: Answering,
        status: int,
        payload: Body,
        route: str,
        headers: Headers = (),
        *,
        compress: bool = False,
    ) -> None:
        """A GET route's answer, counted; `compress` on a route whose answers may be large (the model routes:
        health, readiness and errors of routing stay plain)."""
        self.metrics.request(route, str(status)).inc()
        await answering.respond_json(status, payload, headers, compress=compress)


class _ScoringTimeout(RequestError):
    """Scoring took longer than the limit; its thread may still be running."""


def _score(route: Route, rows: list[Row], explain: bool) -> Scored:
    """The numbers of one request: the answer, its explanations (with the class each explains), and the model
    scored beside it."""
    model, shadow = route.answer.model, route.shadow
    outputs = model.predict_records(rows)
    explanations, explained_class = model.explanations(rows) if explain else (None, None)
    shadow_outputs = shadow.model.predict_records(rows).tolist() if shadow is not None else None
    return Scored(route, outputs, explanations, explained_class, shadow_outputs)


def _kind(status: int) -> str:
    return {
        400: "malformed",
        401: "unauthorized",
        408: "slow_body",
        413: "too_large",
        415: "media_type",
        422: "invalid",
        503: "unavailable",
    }.get(status, str(status))


def from_environment() -> ServingApp:
    """The app of one server worker: `ml-platform serve` put its settings in the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return ServingApp(ServeConfig.from_environment())
