"""HTTP details of the endpoint, kept out of its routes: responses, the bearer check, the body reader.

The server in front (Granian) enforces the limits on connections and headers; what is left to the app is
what only it can decide: the body's size and arrival time, authorization, content type, and saying so clearly.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import orjson

from ml_platform.serving.validation import RequestError


class Scope(TypedDict):
    """What the app reads of an ASGI connection scope (servers send more); a lifespan scope has only `type`."""

    type: str
    path: NotRequired[str]
    method: NotRequired[str]
    headers: NotRequired[Iterable[tuple[bytes, bytes]]]


Message = dict[str, Any]  # an ASGI event, received or sent
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]  # response headers, sent as they are

# An empty Server header: the server would otherwise announce itself on every response.
_BASE_HEADERS = [(b"server", b"")]
JSON = b"application/json"
REALM = b'Bearer realm="ml_platform"'


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def respond(
    send: Send, status: int, body: bytes, content_type: bytes = JSON, headers: Headers = (), head: bool = False
) -> None:
    """One complete response; `head` sends the headers of the same response without its body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_BASE_HEADERS,
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def respond_json(
    send: Send, status: int, payload: Mapping[str, object], headers: Headers = (), head: bool = False
) -> None:
    """A JSON answer as it is, never compressed (routing errors; `Answering.respond_json` for a routed request)."""
    await respond(send, status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), JSON, headers, head)


@dataclass(slots=True)  # built per request, so not frozen (a frozen __init__ costs about 1 µs more)
class Answering:
    """A routed request while it is answered: read once when it arrives (`ServingApp.__call__`), then handed to
    every step of its answer. Its id is the prediction log's (`X-Request-Id`), `arrived` the log's `ts` and
    `started` the start of its latency; whether the client accepts gzip is read from its headers here, once."""

    scope: Scope
    send: Send  # the CORS headers already added for an allowed origin
    id: str
    arrived: float  # time.time() when it arrived
    started: float  # time.perf_counter() when it arrived
    head: bool  # a HEAD request: the answer's headers without its body
    accepts_gzip: bool  # its Accept-Encoding allows gzip (False when answers are never compressed)
    compress_above: int | None  # serving.limits.compress_above_bytes; None: answers are never compressed

    async def respond_json(
        self, status: int, payload: Mapping[str, object], headers: Headers = (), *, compress: bool = False
    ) -> None:
        """The answer; with `compress` (predict and the model routes, whose answers may be large) gzipped as
        `encoded` says, others (health, readiness) as they are."""
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        if compress:
            body, coding = encoded(body, self.accepts_gzip, self.compress_above)
            headers = [*headers, *coding]
        await respond(self.send, status, body, JSON, headers, self.head)


def bearer_ok(scope: Scope, token: str | None) -> bool:
    """`Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110), the token compared in
    constant time. No token configured: open."""
    if not token:
        return True
    value = header(scope, b"authorization")
    if value is None:
        return False
    scheme, _, credentials = value.strip().partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token.encode())


def unauthorized_headers() -> list[tuple[bytes, bytes]]:
    return [(b"www-authenticate", REALM)]


def check_json_content_type(scope: Scope) -> None:
    """A POST body must be JSON; a missing Content-Type is read as JSON (many clients omit it)."""
    value = header(scope, b"content-type")
    if value is None:
        return
    media = value.split(b";", 1)[0].strip().lower()
    if media != JSON and not media.endswith(b"+json"):
        shown = media[:64].decode("latin-1")
        raise RequestError(415, [{"field": "content-type", "error": f"expected application/json, got {shown!r}"}])


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole body, refusing one larger than `limit` (413) or slower than `timeout_s` to arrive (408).
    Both close the connection: the rest of the body is never read."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, [{"field": "body", "error": f"{int(length)} bytes; at most {limit}"}])
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
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
    except TimeoutError:
        raise RequestError(
            408, [{"field": "body", "error": f"not received within {timeout_s:g} s ({size} bytes arrived)"}]
        ) from None


# The body codings a request may declare (RFC 9110 section 8.4): none, or gzip.
IDENTITY_CODINGS = (b"", b"identity")
GZIP_CODINGS = (b"gzip", b"x-gzip")
ACCEPT_ENCODING = (b"accept-encoding", b"gzip")  # sent with a 415 for a coding the endpoint cannot read


def decoded_body(scope: Scope, body: bytes, limit: int) -> bytes:
    """The body as its Content-Encoding says it was sent: gzip is decompressed (at most `limit` bytes once
    decompressed: 413 beyond, so a small bomb cannot fill memory), a body that is not what its coding says is
    a 400, and any other coding a 415 that names the one accepted."""
    coding = (header(scope, b"content-encoding") or b"").strip().lower()
    if coding in IDENTITY_CODINGS:
        return body
    if coding not in GZIP_CODINGS:
        shown = coding[:64].decode("latin-1")
        raise RequestError(
            415, [{"field": "content-encoding", "error": f"{shown!r} is not accepted; send gzip or none"}]
        )
    inflate = zlib.decompressobj(wbits=31)  # gzip framing only
    try:
        decoded = inflate.decompress(body, limit + 1)
    except zlib.error as error:
        raise RequestError(
            400, [{"field": "body", "error": f"Content-Encoding is gzip but the body is not gzip data ({error})"}]
        ) from None
    if len(decoded) > limit or inflate.unconsumed_tail:
        raise RequestError(413, [{"field": "body", "error": f"more than {limit} bytes once decompressed"}])
    if not inflate.eof:
        raise RequestError(400, [{"field": "body", "error": "Content-Encoding is gzip but the gzip data is cut short"}])
    if inflate.unused_data:
        raise RequestError(
            400, [{"field": "body", "error": "Content-Encoding is gzip but data follows the gzip member"}]
        )
    return decoded


# Answers are compressed with zlib level 1: a 1000-row predict answer (21.7 KB) to 5.1 KB in 0.06 ms, where level
# 6 took 0.26 ms for 4.5 KB (benchmarks/serving.py --only gzip); the largest answer, 1000 rows with explanations
# (317 KB), to 77 KB in 1.5 ms, next to seconds of scoring: so it stays on the event loop.
GZIP_LEVEL = 1
VARY = (b"vary", b"accept-encoding")
_GZIPPED = ((b"content-encoding", b"gzip"), VARY)
_PLAIN = (VARY,)
# one element of Accept-Encoding: a coding (or `*`), then parameters; `q` is the weight (RFC 9110 section 12.4.2)
_WEIGHT = re.compile(rb"^q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")


def encoded(body: bytes, gzip: bool, above: int | None) -> tuple[bytes, Headers]:
    """A compressible answer as it is sent, and the headers that say so: gzip when the request accepts it
    (`gzip`, see `request_accepts_gzip`) and the body is larger than `above` bytes (None: never compressed, no
    header). Either way `Vary: Accept-Encoding`, so a cache keeps the plain and the compressed answer of one URL
    apart."""
    if above is None:
        return body, ()
    if gzip and len(body) > above:
        return zlib.compress(body, GZIP_LEVEL, wbits=31), _GZIPPED
    return body, _PLAIN


def request_accepts_gzip(scope: Scope) -> bool:
    """Whether the request's Accept-Encoding (every line of it, as one list) lets its answer be gzip."""
    found = b""
    for key, value in scope["headers"]:
        if key == b"accept-encoding":
            found = found + b"," + value if found else value
    return bool(found) and accepts_gzip(found)


@functools.lru_cache(maxsize=128)  # clients send a handful of distinct values
def accepts_gzip(value: bytes) -> bool:
    """Whether an Accept-Encoding value (RFC 9110 section 12.5.3) lets the answer be gzip: `gzip` or `x-gzip`
    with a weight above 0, else `*` with one; not when identity is weighted higher. No header (b""), an empty
    one or `identity` alone: plain, as most servers read it. An element whose weight cannot be read counts as
    absent."""
    weights: dict[bytes, float] = {}
    for element in value.lower().split(b","):
        coding, *parameters = (part.replace(b" ", b"").replace(b"\t", b"") for part in element.split(b";"))
        weighed = [p for p in parameters if p.startswith(b"q=")]
        match = _WEIGHT.match(weighed[-1]) if weighed else None
        if coding and (match or not weighed):
            weights.setdefault(coding, float(match.group(1)) if match else 1.0)
    gzip = weights.get(b"gzip", weights.get(b"x-gzip", weights.get(b"*", 0.0)))
    return gzip > 0 and gzip >= weights.get(b"identity", 0.0)


def encoded_slash(scope: Scope) -> bool:
    """Whether the request's raw path holds a percent-encoded slash: `%2F` is data inside one path segment, not
    a separator (RFC 3986 section 2.2), so such a path names no route even where its decoded form would."""
    raw = scope.get("raw_path")
    return isinstance(raw, bytes) and b"%2f" in raw.split(b"?", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class Cors:
    """The CORS headers of a request from an allowed origin: `answer` on every answer, `preflight` (those and
    the methods, headers and cache time allowed) on the answer to an OPTIONS preflight."""

    answer: Headers
    preflight: Headers


def cors_headers(scope: Scope, origins: tuple[str, ...], methods: bytes) -> Cors | None:
    """CORS is off unless origins are configured; then an allowed Origin is echoed back (or `*`). None: no
    Origin, or one not allowed."""
    if not origins:
        return None
    origin = header(scope, b"origin")
    if origin is None:
        return None
    text = origin.decode("latin-1")
    if "*" in origins:
        allowed = b"*"
    elif text in origins:
        allowed = origin
    else:
        return None
    answer = ((b"access-control-allow-origin", allowed), (b"vary", b"Origin"))
    return Cors(
        answer,
        (
            *answer,
            (b"access-control-allow-methods", methods),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", b"600"),
        ),
    )


def with_headers(send: Send, headers: Headers) -> Send:
    """`send` that adds `headers` to the response it starts."""

    async def send_with(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *headers]}
        await send(message)

    return send_with
