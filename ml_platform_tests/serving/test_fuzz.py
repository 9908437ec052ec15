"""Fuzz the endpoint from its own served OpenAPI document (Schemathesis): requests that fit the document and
requests that break it, on every route. None may get a 5xx, and none that is refused (4xx) may leave a row in
the prediction log; an answered predict request leaves exactly one."""

from __future__ import annotations

import time

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis import GenerationMode

from ml_platform.serving.prediction_log import read_log

EXAMPLES = 200
BUDGET_S = 60


def test_fuzzing_the_served_document_finds_no_5xx_and_logs_no_refusal(trained, start_server):
    _spec, folders, _holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    served = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    OpenAPIV31SpecValidator(served).validate()
    schema = schemathesis.openapi.from_dict(served)
    predict_path = "/v1/models/flight_delay/predict"
    predict = schema[predict_path]["POST"]
    # two parts in three on predict, bodies that fit the document and bodies that do not; the rest on any route
    cases = st.one_of(
        predict.as_strategy(GenerationMode.POSITIVE),
        predict.as_strategy(GenerationMode.NEGATIVE),
        schema.as_strategy(GenerationMode.POSITIVE),
    )
    session = requests.Session()
    seen: dict[tuple[str, str, int], int] = {}
    started = time.monotonic()

    # derandomized: the same examples on every run, so CI is repeatable; deadline=None since a request's time
    # is the server's, bounded below by the request timeout and above by the whole test's budget
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def fuzz(case):
        if time.monotonic() - started > BUDGET_S:
            return
        before = len(read_log(server.log_path))
        response = case.call(base_url=server.url, session=session, timeout=10)
        status = response.status_code
        seen[(case.method, case.path, status)] = seen.get((case.method, case.path, status), 0) + 1
        assert status < 500, f"{case.method} {case.path} -> {status}: {response.content[:300]!r}"
        logged = len(read_log(server.log_path)) - before
        if 400 <= status < 500:
            assert logged == 0, f"a refused request ({status}) was logged: {case.body!r:.300}"
        elif case.method == "POST" and case.path == predict_path:
            assert logged == 1, f"an answered request left {logged} log rows"

    fuzz()
    assert time.monotonic() - started < BUDGET_S + 30
    answered = sum(n for (method, path, status), n in seen.items() if path == predict_path and status == 200)
    refused = sum(n for (method, path, status), n in seen.items() if path == predict_path and 400 <= status < 500)
    assert answered and refused, f"the fuzzer should reach both outcomes of predict: {seen}"
    assert server.process.poll() is None, "the server must survive the fuzzing"
