"""The two request languages of the predict route, as one small interface each.

v1 is the platform's own (`instances` or MLflow's `dataframe_split`); v2 is the Open Inference Protocol that
KServe, Triton and MLServer clients speak. Both turn a body into the same rows, which the app validates,
scores and logs the same way; they differ only in how a request and its answer are shaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from typing import Protocol as Interface

from ml_platform.serving import v2
from ml_platform.serving.validation import RequestError, Row, instances_of, validate_rows

if TYPE_CHECKING:
    import numpy as np

    from ml_platform.core.model import Model
    from ml_platform.serving.config import ServeConfig
    from ml_platform.serving.slot import Slot

Explanations = list[list[dict[str, Any]]]  # each row's top feature contributions (`Model.explanations`)
LabelFields = dict[str, list[Any]]  # a classifier's `labels` (`Labels.response`), `explained_class` when explained
Body = dict[str, Any]  # a JSON response body


class V2Request(NamedTuple):
    """What a v2 answer needs from its request besides the rows: the client's own id and the outputs it named."""

    id: str | None
    outputs: list[str] | None


@dataclass(slots=True)  # built per request, so not frozen (a frozen __init__ costs about 1 µs more)
class Parsed:
    """A predict request as its protocol read it: the validated rows, whether explanations were asked for, and
    (v2 only, else None) what its answer echoes of it."""

    rows: list[Row]
    explain: bool
    v2_request: V2Request | None


@dataclass(slots=True)
class Answer:
    """What a 200 body says in either language: the model answered for, the version that answered, its
    predictions (JSON values) and each row's explanations when asked for, the logged request id, the task, and
    a classifier's label fields."""

    model: str
    version: str
    predictions: list[Any]
    explanations: Explanations | None
    request_id: str
    task: str | None
    fields: LabelFields


class Protocol(Interface):
    """One request language of the predict route: how a body becomes rows, and how its answers are shaped."""

    @property
    def route(self) -> str:
        """The route's metrics label."""
        ...

    def parse(self, payload: Any, slot: Slot, config: ServeConfig) -> Parsed:
        """The request in `payload` (the body as orjson.loads gave it), validated against the slot's schema;
        RequestError naming the field at fault."""
        ...

    def answer(self, answer: Answer, v2_request: V2Request | None) -> Body:
        """The 200 body of `answer`; `v2_request`: what a v2 answer echoes of its request."""
        ...

    def refusal(self, error: RequestError, request_id: str) -> Body:
        """The body of a request refused (4xx, 503)."""
        ...

    def failure(self, message: str, request_id: str) -> Body:
        """The body of a request the server failed to answer (the prediction log could not be written)."""
        ...


def label_fields(model: Model, outputs: np.ndarray, explained_class: list[Any] | None) -> LabelFields:
    """A classifier's label fields, with the class each row's explanation is about when explained. The labels
    come from the answering model's own scores (the ndarray, before `tolist`), so they agree with `predictions`
    and with offline `predict_labels`; regression gets no fields."""
    labels = model.labels
    if labels is None:
        return {}
    fields = labels.response(outputs)
    if explained_class is not None:
        fields["explained_class"] = list(explained_class)
    return fields


class _V1:
    """The platform's own: `instances` or MLflow's `dataframe_split`; an answer keyed by `predictions`."""

    route = "predict"

    def parse(self, payload: Any, slot: Slot, config: ServeConfig) -> Parsed:
        rows, explain = instances_of(payload, config.max_rows)
        validate_rows(rows, slot.schema, "instances", config.unknown_fields, slot.allowed)
        return Parsed(rows, explain, None)

    def answer(self, answer: Answer, v2_request: V2Request | None) -> Body:
        """The four keys clients have always read, in their order; a classifier's labels (and multiclass
        probabilities by class name) after them, so nothing a client parsed before moves."""
        body: Body = {
            "predictions": answer.predictions,
            "model": answer.model,
            "version": answer.version,
            "request_id": answer.request_id,
        }
        fields = answer.fields
        for key in ("labels", "probabilities"):
            if key in fields:
                body[key] = fields[key]
        if answer.explanations is not None:
            body["explanations"] = answer.explanations
            if "explained_class" in fields:
                body["explained_class"] = fields["explained_class"]
        return body

    def refusal(self, error: RequestError, request_id: str) -> Body:
        return {
            "error": "bad request" if error.status < 500 else "unavailable",
            **error.body(),
            "request_id": request_id,
        }

    def failure(self, message: str, request_id: str) -> Body:
        return {"error": message, "request_id": request_id}


class _V2:
    """The Open Inference Protocol: input tensors in, an output tensor per name out, the client's `id` echoed."""

    route = "infer"

    def parse(self, payload: Any, slot: Slot, config: ServeConfig) -> Parsed:
        names = v2.output_names(slot.champion.model.labels)
        request = v2.rows_of(payload, slot.schema, config.max_rows, names)  # validates the rows too
        # rows_of refused all but a dict
        return Parsed(request.rows, False, V2Request(request.id, v2.requested_outputs(payload)))

    def answer(self, answer: Answer, v2_request: V2Request | None) -> Body:
        """The inference response; its `id` is the client's own when it sent one, else the logged one."""
        client_id = v2_request.id if v2_request is not None else None
        return v2.infer_response(
            answer.model,
            answer.version,
            client_id or answer.request_id,
            answer.predictions,
            answer.task,
            labels=answer.fields.get("labels"),
            outputs=v2_request.outputs if v2_request is not None else None,
        )

    def refusal(self, error: RequestError, request_id: str) -> Body:
        return {**v2.error_body(error), "request_id": request_id}

    def failure(self, message: str, request_id: str) -> Body:
        return {"error": message, "request_id": request_id}


V1: Protocol = _V1()
V2: Protocol = _V2()
