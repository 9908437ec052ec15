"""The two request languages of the predict route, as one small interface each.

v1 is the platform's own (`instances` or MLflow's `dataframe_split`); v2 is the Open Inference Protocol that
KServe, Triton and MLServer clients speak. Both turn a body into the same rows, which the app validates,
scores and logs the same way; they differ only in how a request and its answer are shaped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from typing import Protocol as Signature

from ml_platform.serving import v2
from ml_platform.serving.validation import RequestError, Row, instances_of, validate_rows

if TYPE_CHECKING:
    import numpy as np

    from ml_platform.core.model import Model
    from ml_platform.serving.config import ServeConfig
    from ml_platform.serving.loader import LoadedModel
    from ml_platform.serving.slot import Slot

Explanations = list[list[dict[str, Any]]]  # each row's top feature contributions (`Model.explanations`)
Explained = tuple[Explanations, list[Any]]  # ... and the class each row's explanation is about
LabelFields = dict[str, list[Any]]  # a classifier's `labels` (`Labels.response`), `explained_class` when explained
Body = dict[str, Any]  # a JSON response body


class V2Request(NamedTuple):
    """What a v2 answer needs from its request besides the rows: the client's id and the outputs it named."""

    id: str | None
    outputs: list[str] | None


class Answer(Signature):
    """The 200 body: the predictions of `loaded` (answering for `model`), with the request's own details."""

    def __call__(
        self,
        model: str,
        loaded: LoadedModel,
        predictions: list[Any],
        explanations: Explanations | None,
        client_id: V2Request | None,
        request_id: str,
        task: str | None,
        fields: LabelFields | None = None,
    ) -> Body: ...


@dataclass(frozen=True)
class Protocol:
    route: str  # the metrics label
    # (payload: the body as orjson.loads gave it, slot, config) -> (validated rows, explain, client_id); v2's
    # client_id is a V2Request (the request's id and the outputs it named), v1's None
    parse: Callable[[Any, Slot, ServeConfig], tuple[list[Row], bool, V2Request | None]]
    answer: Answer
    refusal: Callable[[RequestError, str], Body]  # (error, request_id) -> body
    failure: Callable[[str, str], Body]  # (message, request_id) -> body


def label_fields(
    model: Model, outputs: np.ndarray, explained: Explained | None
) -> tuple[Explanations | None, LabelFields]:
    """(explanations, a classifier's label fields). The labels come from the answering model's own scores (the
    ndarray, before `tolist`), so they agree with `predictions` and with offline `predict_labels`; regression
    gets no fields."""
    explanations, classes = explained if explained is not None else (None, None)
    labels = model.labels
    if labels is None:
        return explanations, {}
    fields = labels.response(outputs)
    if classes is not None:
        fields["explained_class"] = list(classes)
    return explanations, fields


def _v1_parse(payload: Any, slot: Slot, config: ServeConfig) -> tuple[list[Row], bool, None]:
    rows, explain = instances_of(payload, config.max_rows)
    validate_rows(rows, slot.schema, "instances", config.unknown_fields, slot.allowed)
    return rows, explain, None


def _v1_answer(
    model: str,
    loaded: LoadedModel,
    predictions: list[Any],
    explanations: Explanations | None,
    client_id: V2Request | None,
    request_id: str,
    task: str | None,
    fields: LabelFields | None = None,
) -> Body:
    """The four keys clients have always read, in their order; a classifier's labels (and multiclass
    probabilities by class name) after them, so nothing a client parsed before moves."""
    body: Body = {"predictions": predictions, "model": model, "version": loaded.version, "request_id": request_id}
    fields = fields or {}
    for key in ("labels", "probabilities"):
        if key in fields:
            body[key] = fields[key]
    if explanations is not None:
        body["explanations"] = explanations
        if "explained_class" in fields:
            body["explained_class"] = fields["explained_class"]
    return body


def _v1_refusal(error: RequestError, request_id: str) -> Body:
    return {"error": "bad request" if error.status < 500 else "unavailable", **error.body(), "request_id": request_id}


def _v2_parse(payload: Any, slot: Slot, config: ServeConfig) -> tuple[list[Row], bool, V2Request]:
    names = v2.output_names(slot.champion.model.labels)
    rows, client_id = v2.rows_of(payload, slot.schema, config.max_rows, names)  # validates the rows too
    return rows, False, V2Request(client_id, v2.requested_outputs(payload))  # rows_of refused all but a dict


def _v2_answer(
    model: str,
    loaded: LoadedModel,
    predictions: list[Any],
    explanations: Explanations | None,
    client_id: V2Request | None,
    request_id: str,
    task: str | None,
    fields: LabelFields | None = None,
) -> Body:
    request = client_id if isinstance(client_id, V2Request) else V2Request(client_id, None)
    labels = (fields or {}).get("labels")
    return v2.infer_response(
        model, loaded.version, request.id or request_id, predictions, task, labels=labels, outputs=request.outputs
    )


def _v2_refusal(error: RequestError, request_id: str) -> Body:
    return {**v2.error_body(error), "request_id": request_id}


V1 = Protocol(
    "predict",
    _v1_parse,
    _v1_answer,
    _v1_refusal,
    lambda message, request_id: {"error": message, "request_id": request_id},
)
V2 = Protocol(
    "infer",
    _v2_parse,
    _v2_answer,
    _v2_refusal,
    lambda message, request_id: {"error": message, "request_id": request_id},
)
