"""The two request languages of the predict route, as one small interface each.

v1 is the platform's own (`instances` or MLflow's `dataframe_split`); v2 is the Open Inference Protocol that
KServe, Triton and MLServer clients speak. Both turn a body into the same rows, which the app validates,
scores and logs the same way; they differ only in how a request and its answer are shaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ml_platform.serving import v2
from ml_platform.serving.validation import RequestError, instances_of, validate_rows


@dataclass(frozen=True)
class Protocol:
    route: str                     # the metrics label
    parse: Callable                # (payload, slot, config) -> (validated rows, explain, client_id)
    answer: Callable               # (model, loaded, predictions, explanations, client_id, request_id, task) -> dict
    refusal: Callable              # (RequestError, request_id) -> dict
    failure: Callable              # (message, request_id) -> dict


def _v1_parse(payload, slot, config):
    rows, explain = instances_of(payload, config.max_rows)
    validate_rows(rows, slot.schema, "instances", config.unknown_fields, slot.allowed)
    return rows, explain, None


def _v1_answer(model, loaded, predictions, explanations, client_id, request_id, task):
    body = {"predictions": predictions, "model": model, "version": loaded.version, "request_id": request_id}
    if explanations is not None:
        body["explanations"] = explanations
    return body


def _v1_refusal(error: RequestError, request_id: str) -> dict:
    return {"error": "bad request" if error.status < 500 else "unavailable", **error.body(),
            "request_id": request_id}


def _v2_parse(payload, slot, config):
    rows, client_id = v2.rows_of(payload, slot.schema, config.max_rows)  # validates the rows too
    return rows, False, client_id


def _v2_answer(model, loaded, predictions, explanations, client_id, request_id, task):
    return v2.infer_response(model, loaded.version, client_id or request_id, predictions, task)


def _v2_refusal(error: RequestError, request_id: str) -> dict:
    return {**v2.error_body(error), "request_id": request_id}


V1 = Protocol("predict", _v1_parse, _v1_answer, _v1_refusal,
              lambda message, request_id: {"error": message, "request_id": request_id})
V2 = Protocol("infer", _v2_parse, _v2_answer, _v2_refusal,
              lambda message, request_id: {"error": message, "request_id": request_id})
