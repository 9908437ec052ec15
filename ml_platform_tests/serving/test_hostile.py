"""The endpoint against careless and hostile callers, over real HTTP on 127.0.0.1: every request of this kind
gets a 4xx naming the field (never a 500, never a log failure), slow and oversized ones are cut off by the
configured limits, and nothing refused reaches the prediction log."""

from __future__ import annotations

import gzip
import os
import re
import socket
import stat
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
import pytest
import requests

from ml_platform.serving.http import accepts_gzip, encoded, request_accepts_gzip
from ml_platform.serving.prediction_log import read_log

LIMITS = {"header_timeout": "1s", "body_timeout": "1s", "in_flight": 2, "header_bytes": 16384, "scoring_timeout": "1ms"}
ORIGIN = "https://app.example"


def _records(frame):
    return [
        {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


@pytest.fixture(scope="module")
def row(trained):
    return _records(trained[2].head(1))[0]


@pytest.fixture
def limited(trained, start_server, tmp_path, write_spec):
    """A server under a spec with short time limits, a two-request in-flight cap and a private log folder."""
    folder = tmp_path / "specs"
    write_spec(folder, {"serving.limits": LIMITS, "serving.cors_origins": [ORIGIN]}, name="flight_delay.yaml")
    return start_server(
        "--model-dir",
        str(trained[1][0]),
        log_path=tmp_path / "private" / "log.sqlite",
        env={"ML_PLATFORM_SPECS": str(folder)},
    )


def _nested(depth: int, leaf=1) -> bytes:
    """A JSON value nested `depth` lists deep (as raw JSON: encoders refuse to write it)."""
    return b"[" * depth + orjson.dumps(leaf) + b"]" * depth


def _with_raw(row: dict, name: str, raw: bytes) -> bytes:
    """{"instances": [row]} with `name`'s value replaced by raw JSON."""
    rest = orjson.dumps({k: v for k, v in row.items() if k != name})
    return b'{"instances": [' + rest[:-1] + b', "' + name.encode() + b'": ' + raw + b"}]}"


def _hostile_cases(row: dict) -> list[tuple[str, object, int, str]]:
    """(case, body, expected status, the field the error must name): each one found failing with a 500 or a
    mis-counted 503 before, or a shape of the same family."""
    columns = list(row)
    values = [row[c] for c in columns]
    return [
        ("value nested 1000 deep", _with_raw(row, "distance", _nested(1000)), 422, "instances[0].distance"),
        ("category nested 1000 deep", _with_raw(row, "origin", _nested(1000, "JFK")), 422, "instances[0].origin"),
        (
            "event time nested 300 deep",
            _with_raw(row, "scheduled_departure", _nested(300, "2013-06-01")),
            422,
            "instances[0].scheduled_departure",
        ),
        ("object as value", {"instances": [{**row, "temp": {"a": {"b": 1}}}]}, 422, "instances[0].temp"),
        (
            "list as column name",
            {"dataframe_split": {"columns": [[1]], "data": [[1]]}},
            422,
            "dataframe_split.columns[0]",
        ),
        (
            "object as column name",
            {"dataframe_split": {"columns": [{"a": 1}, *columns], "data": [[1, *values]]}},
            422,
            "dataframe_split.columns[0]",
        ),
        (
            "integer column name beside the features",
            {"dataframe_split": {"columns": [*columns, 7], "data": [[*values, 1]]}},
            422,
            f"dataframe_split.columns[{len(columns)}]",
        ),
        (
            "null column name beside the features",
            {"dataframe_split": {"columns": [*columns, None], "data": [[*values, 1]]}},
            422,
            f"dataframe_split.columns[{len(columns)}]",
        ),
        ("NUL in a category", {"instances": [{**row, "origin": "JF\x00K"}]}, 422, "instances[0].origin"),
        ("900 KB category", {"instances": [{**row, "carrier": "x" * 900_000}]}, 422, "instances[0].carrier"),
        ("instances of numbers", {"instances": [1, 2]}, 422, "instances[0]"),
    ]


def test_every_hostile_body_gets_a_4xx_naming_the_field(trained, start_server, row):
    server = start_server("--model-dir", str(trained[1][0]))
    failures = []
    for case, body, status, field in _hostile_cases(row):
        response = requests.post(
            server.predict_url(),
            data=body if isinstance(body, bytes) else orjson.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        answer = response.json()
        fields = [e["field"] for e in answer.get("errors", [])]
        if response.status_code != status or field not in fields:
            failures.append((case, response.status_code, fields))
        if len(response.content) > 4000:
            failures.append((case, "echoes", len(response.content)))
    assert failures == []
    assert len(read_log(server.log_path)) == 0, "refused requests must not be logged"
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'ml_platform_errors_total{kind="log"}' not in metrics, "bad input counted as a log failure"
    assert 'code="500"' not in metrics


def test_unknown_fields_are_never_stored_and_a_bad_batch_says_how_many_errors(trained, start_server, row):
    server = start_server("--model-dir", str(trained[1][0]))
    secret = {**row, "ssn": "123-45-6789", "email": "a@example.com"}
    answered = requests.post(server.predict_url(), data=_with_raw(secret, "deep", _nested(300)), timeout=10)
    assert answered.status_code == 200
    stored = read_log(server.log_path)["features"].iloc[0]
    assert "ssn" not in stored and "123-45-6789" not in stored and "deep" not in stored
    assert set(orjson.loads(stored)[0]) <= set(row) | {"scheduled_departure", "flight_id"}
    bad = requests.post(server.predict_url(), json={"instances": [{**row, "distance": "far"}] * 1000}, timeout=10)
    answer = bad.json()
    assert bad.status_code == 422 and len(answer["errors"]) == 50
    assert answer["errors_total"] == 1000 and "50 of 1000" in answer["note"]


def test_protocol_details(trained, start_server, row):
    server = start_server(
        "--model-dir",
        str(trained[1][0]),
        env={"ML_PLATFORM_API_TOKEN": "s3cret", "ML_PLATFORM_METRICS_TOKEN": "scrape"},
    )
    body = {"instances": [row]}
    refused = requests.post(server.predict_url(), json=body, timeout=5)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    lower = requests.post(server.predict_url(), json=body, headers={"Authorization": "bearer s3cret"}, timeout=5)
    assert lower.status_code == 200, "the auth scheme is case-insensitive"
    assert lower.headers.get("server", "") == "", "no server banner"
    auth = {"Authorization": "Bearer s3cret"}
    text = requests.post(
        server.predict_url(), data=orjson.dumps(body), timeout=5, headers={**auth, "Content-Type": "text/plain"}
    )
    assert text.status_code == 415 and text.json()["errors"][0]["field"] == "content-type"
    wrong_method = requests.put(server.predict_url(), json=body, headers=auth, timeout=5)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
    get_only = requests.post(f"{server.url}/health", timeout=5)
    assert get_only.status_code == 405 and "GET" in get_only.headers["allow"]
    head = requests.head(f"{server.url}/health", timeout=5)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    assert requests.head(f"{server.url}/v1/models/flight_delay", headers=auth, timeout=5).status_code == 200
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200, "health stays open"
    assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{server.url}/metrics", headers=auth, timeout=5).status_code == 401, "its own token"
    scraped = requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer scrape"}, timeout=5)
    assert scraped.status_code == 200 and "ml_platform_requests_total" in scraped.text
    preflight = requests.options(server.predict_url(), headers={"Origin": "https://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in preflight.headers, "CORS is off by default"


def test_content_codings_both_ways_and_encoded_slashes_as_the_standard_says(
    trained, start_server, row, tmp_path, write_spec
):
    """RFC 9110 section 8.4: a body is read as its Content-Encoding says (gzip decompressed, within the body
    limit once decompressed; a body that is not what its coding claims, or a coding not accepted, refused and
    named), and a large answer is gzipped when Accept-Encoding allows it (section 12.5.3). RFC 3986 section
    2.2: `%2F` is data inside a path segment, so a path that spells a route's slashes that way names no route."""
    folder = tmp_path / "specs"
    write_spec(folder, {"serving.limits": {"compress_above_bytes": COMPRESS_ABOVE}}, name="flight_delay.yaml")
    server = start_server("--model-dir", str(trained[1][0]), env={"ML_PLATFORM_SPECS": str(folder)})
    plain = orjson.dumps({"instances": [row]})
    json_type = {"Content-Type": "application/json"}

    def post(body: bytes, coding: str | None, url: str | None = None) -> requests.Response:
        headers = {**json_type, **({"Content-Encoding": coding} if coding else {})}
        return requests.post(url or server.predict_url(), data=body, headers=headers, timeout=10)

    expected = post(plain, None)
    assert expected.status_code == 200
    for coding in ("gzip", "x-gzip", "GZIP"):
        zipped = post(gzip.compress(plain), coding)
        assert zipped.status_code == 200 and zipped.json()["predictions"] == expected.json()["predictions"]
    assert post(plain, "identity").json()["predictions"] == expected.json()["predictions"]

    claimed = post(plain, "gzip")  # says gzip, is not
    assert claimed.status_code == 400 and "not gzip data" in claimed.json()["errors"][0]["error"]
    cut = post(gzip.compress(plain)[:-12], "gzip")
    assert cut.status_code == 400 and "cut short" in cut.json()["errors"][0]["error"]
    trailing = post(gzip.compress(plain) + b"junk", "gzip")
    assert trailing.status_code == 400 and trailing.json()["errors"][0]["field"] == "body"
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")  # 50 MB of JSON whitespace in about 50 KB
    assert len(bomb) < 1_000_000
    exploded = post(bomb, "gzip")
    assert exploded.status_code == 413 and "once decompressed" in exploded.json()["errors"][0]["error"]
    brotli = post(plain, "br")
    assert brotli.status_code == 415 and brotli.json()["errors"][0]["field"] == "content-encoding"
    assert brotli.headers["accept-encoding"] == "gzip"
    assert post(plain, "gzip, br").status_code == 415  # stacked codings are not accepted either

    for path in ("/v1/models%2Fflight_delay/predict", "/v1%2fmodels/flight_delay/predict"):
        refused = post(plain, None, f"{server.url}{path}")
        assert refused.status_code == 404, path
    assert requests.get(f"{server.url}/health%2F", timeout=5).status_code == 404
    # an encoded unreserved character is the character itself (RFC 3986 section 6.2.2.2): same route
    assert post(plain, None, f"{server.url}/v1/models/flight%5Fdelay/predict").status_code == 200
    _answers_are_compressed_as_asked(server, _records(trained[2].head(1000)))
    assert server.process.poll() is None


def test_accept_encoding_is_weighed_as_rfc_9110_says_and_null_never_compresses():
    """RFC 9110 section 12.5.3, without a server: gzip (or x-gzip, or `*`) with a weight above 0 and not below
    identity's allows a gzipped answer; a weight of 0, identity alone, an empty or unreadable value does not;
    `compress_above_bytes: null` sends every answer as it is, without Vary."""
    allowed = ("gzip", "GZIP", "x-gzip", "*", "gzip, deflate", " gzip ; q=1.0 ", "gzip;q=0.001", "br, *;q=0.5")
    refused = ("", "identity", "gzip;q=0", "gzip; q=0.000", "*;q=0", "gzip;q=0, *", "deflate, br", "gzip;q=2")
    assert all(accepts_gzip(value.encode()) for value in (*allowed, "identity;q=0, gzip;q=0.1", "gzip;level=1"))
    assert not any(accepts_gzip(value.encode()) for value in (*refused, "gzip;q=abc", "gzip;q=0.5, identity"))
    scope = {"type": "http", "headers": [(b"accept-encoding", b"br"), (b"accept-encoding", b"gzip")]}
    assert request_accepts_gzip(scope), "every Accept-Encoding line is read"
    assert not request_accepts_gzip({"type": "http", "headers": [(b"accept-encoding", b"br")]})
    body = b"[" + b"0.5," * 5000 + b"1]"
    assert encoded(body, True, None) == (body, ())
    zipped, headers = encoded(body, True, 100)
    assert gzip.decompress(zipped) == body and (b"content-encoding", b"gzip") in headers
    assert encoded(body, True, len(body)) == (body, ((b"vary", b"accept-encoding"),))
    assert encoded(body, False, 100) == (body, ((b"vary", b"accept-encoding"),)), "not accepted: plain, with Vary"


COMPRESS_ABOVE = 2048  # the spec's serving.limits.compress_above_bytes in the test above (the default is 4096)


def _answers_are_compressed_as_asked(server, rows: list[dict]) -> None:
    """Predict and model answers larger than the spec's threshold come gzipped (the same JSON) when
    Accept-Encoding allows gzip, plain otherwise, `Vary: Accept-Encoding` on both; health stays untouched."""

    def sent(accept: str | None, rows: list[dict] = rows, method: str = "POST", path: str = "") -> tuple:
        """(response, the body's bytes as they came over the wire)."""
        url = f"{server.url}{path}" if path else server.predict_url()
        data = orjson.dumps({"instances": rows}) if method == "POST" else None
        headers = {"Content-Type": "application/json", "Accept-Encoding": accept}  # None: no such header
        response = requests.request(method, url, data=data, headers=headers, timeout=30, stream=True)
        return response, response.raw.read(decode_content=False)

    def answer(body: bytes) -> dict:
        return {k: v for k, v in orjson.loads(body).items() if k != "request_id"}

    plain, plain_bytes = sent(None)
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "accept-encoding" and len(answer(plain_bytes)["predictions"]) == 1000
    for accept in ("gzip", "GZIP", "x-gzip", "*", "gzip, deflate, br", "br;q=1, gzip;q=0.5", "identity;q=0, *"):
        zipped, zipped_bytes = sent(accept)
        assert zipped.headers.get("content-encoding") == "gzip", accept
        assert zipped.headers["vary"] == "accept-encoding" and int(zipped.headers["content-length"]) == len(
            zipped_bytes
        )
        assert answer(gzip.decompress(zipped_bytes)) == answer(plain_bytes), accept
        assert len(zipped_bytes) < len(plain_bytes) / 2
    for accept in ("gzip;q=0", "gzip; q=0.000", "identity", "", "deflate, br", "*;q=0", "gzip;q=0.5, identity"):
        refused, refused_bytes = sent(accept)
        assert "content-encoding" not in refused.headers, accept
        assert answer(refused_bytes) == answer(plain_bytes) and refused.headers["vary"] == "accept-encoding"

    # the threshold is the spec's: an answer between it and the default (4096) is compressed, a small one not
    middle, middle_bytes = sent("gzip", rows[:100], "POST")
    assert COMPRESS_ABOVE < len(gzip.decompress(middle_bytes)) < 4096
    assert middle.headers["content-encoding"] == "gzip"
    small, small_bytes = sent("gzip", rows[:1])
    assert "content-encoding" not in small.headers and len(small_bytes) <= COMPRESS_ABOVE
    assert small.headers["vary"] == "accept-encoding" and len(answer(small_bytes)["predictions"]) == 1

    # an error body is the same JSON either way: gzipped when large (50 errors listed), plain when small
    broken = [{**r, "distance": "far"} for r in rows]
    large_error, large_error_bytes = sent("gzip", broken)
    assert large_error.status_code == 422 and large_error.headers["content-encoding"] == "gzip"
    errors = orjson.loads(gzip.decompress(large_error_bytes))
    assert errors["errors_total"] == 1000 and errors["errors"][0]["field"] == "instances[0].distance"
    small_error, small_error_bytes = sent("gzip", broken[:1])
    assert small_error.status_code == 422 and "content-encoding" not in small_error.headers
    assert orjson.loads(small_error_bytes)["errors"][0]["field"] == "instances[0].distance"

    # a HEAD answers the headers its GET would; health and readiness are never compressed nor vary
    got, got_bytes = sent("gzip", method="GET", path="/openapi.json")
    headed, headed_bytes = sent("gzip", method="HEAD", path="/openapi.json")
    assert got.headers["content-encoding"] == headed.headers["content-encoding"] == "gzip"
    assert int(headed.headers["content-length"]) == len(got_bytes) and headed_bytes == b""
    assert orjson.loads(gzip.decompress(got_bytes))["openapi"]
    for method in ("GET", "HEAD"):
        for path in ("/health", "/ready", "/v2/health/live"):
            probe, probe_bytes = sent("gzip", method=method, path=path)
            assert probe.status_code == 200 and "content-encoding" not in probe.headers, (method, path)
            assert "vary" not in probe.headers and (probe_bytes == b"") == (method == "HEAD")


def _connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit_s: float = 8.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took (limit_s: open)."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, float("inf")
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def test_time_and_size_limits_close_what_they_refuse(limited, row):
    path = "/v1/models/flight_delay/predict"
    idle = _connect(limited)  # a connection that never says anything
    assert _read_until_closed(idle)[1] < 5
    half = _connect(limited)
    half.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode())  # headers never finished
    assert _read_until_closed(half)[1] < 5
    short = _connect(limited)  # a body that promises more than it sends
    short.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f'Content-Length: 1000\r\n\r\n{{"instances": ['.encode()
    )
    answer, took = _read_until_closed(short)
    assert answer.startswith(b"HTTP/1.1 408") and took < 5
    huge_header = _connect(limited)
    huge_header.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 200_000}\r\n\r\n".encode())
    assert _read_until_closed(huge_header)[0].startswith(b"HTTP/1.1 431")
    too_large = _connect(limited)  # 413 on a keep-alive connection: answered and closed, the rest never read
    too_large.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 100000000\r\n\r\n".encode()
        + b" " * 65536
    )
    answer, took = _read_until_closed(too_large)
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower() and took < 5
    assert requests.get(f"{limited.url}/health", timeout=5).status_code == 200
    assert len(read_log(limited.log_path)) == 0


def test_in_flight_cap_answers_503_with_retry_after(limited, row):
    path = "/v1/models/flight_delay/predict"
    holders = []
    for _ in range(2):  # two requests whose bodies are still arriving hold both places
        sock = _connect(limited)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
        holders.append(sock)
    time.sleep(0.2)
    busy = requests.post(limited.predict_url(), json={"instances": [row]}, timeout=5)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["errors"][0]["field"] == "server"
    for sock in holders:
        assert _read_until_closed(sock)[0].startswith(b"HTTP/1.1 408")
    assert requests.post(limited.predict_url(), json={"instances": [row]}, timeout=5).status_code == 200
    metrics = requests.get(f"{limited.url}/metrics", timeout=5).text
    assert re.search(r'ml_platform_errors_total\{kind="overloaded"\} 1\.0', metrics)
    assert 'kind="log"' not in metrics


def test_scoring_timeout_and_cors(limited, trained):
    """A request that takes longer to score than the limit is a 503 that logs nothing (the one-row requests
    above are scored at once); a configured origin gets CORS headers, any other none."""
    heavy = {"instances": _records(trained[2].head(1000)), "explain": True}
    late = requests.post(limited.predict_url(), json=heavy, timeout=30)
    assert late.status_code == 503 and late.json()["errors"][0]["field"] == "scoring"
    assert late.headers["retry-after"] == "1"
    assert len(read_log(limited.log_path)) == 0
    preflight = requests.options(limited.predict_url(), headers={"Origin": ORIGIN}, timeout=5)
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    health = requests.get(f"{limited.url}/health", headers={"Origin": ORIGIN}, timeout=5)
    assert health.headers["access-control-allow-origin"] == ORIGIN
    other = requests.options(limited.predict_url(), headers={"Origin": "https://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in other.headers
    assert requests.get(f"{limited.url}/health", timeout=5).status_code == 200  # still serving


def test_the_prediction_log_is_private(limited, row):
    assert requests.post(limited.predict_url(), json={"instances": [row]}, timeout=5).status_code == 200
    assert stat.S_IMODE(os.stat(limited.log_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(limited.log_path.parent).st_mode) == 0o700
    for sidecar in limited.log_path.parent.glob(f"{limited.log_path.name}-*"):
        assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600, sidecar


def test_heavy_requests_do_not_hold_up_health_checks(trained, start_server):
    """Four clients send 1000-row explain requests; every /health meanwhile answers (the benchmark measures
    how fast: benchmarks/serving.py). A heavy request is answered, or refused by the scoring timeout (a 503
    naming `scoring`, when four of them queue on a busy machine), never failed otherwise."""
    server = start_server("--model-dir", str(trained[1][0]))
    heavy = {"instances": _records(trained[2].head(1000)), "explain": True}
    stop = time.monotonic() + 6
    done: list[tuple[int, str | None]] = []

    def client():
        with requests.Session() as session:
            while time.monotonic() < stop:
                response = session.post(server.predict_url(), json=heavy, timeout=30)
                field = response.json()["errors"][0]["field"] if response.status_code == 503 else None
                done.append((response.status_code, field))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    checks = []
    while time.monotonic() < stop:
        checks.append(requests.get(f"{server.url}/health", timeout=5).status_code)
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=40)
    assert (200, None) in done and set(done) <= {(200, None), (503, "scoring")}, done
    assert checks and set(checks) == {200}


def _self_signed(folder):
    """A certificate for 127.0.0.1 and its PKCS#8 key, made here (no network, no CA)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


def test_tls(trained, start_server, tmp_path, row):
    certfile, keyfile = _self_signed(tmp_path)
    server = start_server(
        "--model-dir",
        str(trained[1][0]),
        "--ssl-certfile",
        str(certfile),
        "--ssl-keyfile",
        str(keyfile),
        scheme="https",
        verify=str(certfile),
    )
    answer = requests.post(server.predict_url(), json={"instances": [row]}, timeout=5, verify=str(certfile))
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/health", timeout=5)  # not trusted without the certificate
    with pytest.raises(requests.RequestException):
        requests.get(server.url.replace("https://", "http://") + "/health", timeout=5)
