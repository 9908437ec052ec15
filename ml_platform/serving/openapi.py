"""The endpoint's OpenAPI 3.1 document (served at `GET /openapi.json`), built from one description of its shapes.

The request and response bodies are the pydantic models below; `document` turns them into the document's
JSON Schemas, with the instance object's properties taken from the served model's own `Schema` (a number or a
string per feature, null where the feature is nullable, every feature required) and the request's row cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import JsonDict, JsonSchemaValue, SkipJsonSchema, models_json_schema

from ml_platform.serving.validation import Schema

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"


def _optional(**kwargs: Any) -> Any:
    """An optional field that is absent, never null, when not sent (no `default: null` in the document)."""
    return Field(default=None, json_schema_extra=_without_default, **kwargs)


def _without_default(schema: JsonDict) -> None:
    schema.pop("default", None)


class Contribution(BaseModel):
    feature: str
    contribution: float = Field(description="The feature's TreeSHAP contribution to the row's prediction.")


Label = str | int | float | bool  # a class as the model was trained on it: text, a number or a boolean


class PredictResponse(BaseModel):
    predictions: list[float] | list[list[float]] = Field(
        description="One per row: the positive class's probability (binary), the value (regression), or one "
        "probability per class (multiclass)."
    )
    model: str
    version: str = Field(description="The model version that answered.")
    request_id: str = Field(
        description="The request's id in the prediction log (also the `X-Request-Id` header): "
        "`ml-platform trace <request_id>` shows the model version, data and code behind the answer."
    )
    labels: list[Label] | SkipJsonSchema[None] = _optional(
        description="Classifiers: the predicted class per row (binary: the positive class when its probability is "
        "at least 0.5; multiclass: the most probable class)."
    )
    probabilities: list[dict[str, float]] | SkipJsonSchema[None] = _optional(
        description="Multiclass: each row's probabilities keyed by class name (the same numbers as `predictions`)."
    )
    explanations: list[list[Contribution]] | SkipJsonSchema[None] = _optional(
        description="With `explain: true`: each row's top features by absolute contribution, largest first."
    )
    explained_class: list[Label] | SkipJsonSchema[None] = _optional(
        description="Classifiers, with `explain: true`: the class each row's explanation is about (multiclass: the "
        "predicted class; binary: the positive class)."
    )


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `instances[3].distance`.")
    error: str


class ErrorResponse(BaseModel):
    error: str = Field(description="What went wrong, in short.")
    errors: list[FieldError] | SkipJsonSchema[None] = _optional(description="Every field at fault (bounded).")
    errors_total: int | SkipJsonSchema[None] = _optional(description="How many problems there were in all.")
    note: str | SkipJsonSchema[None] = _optional()
    request_id: str | SkipJsonSchema[None] = _optional()


class FeatureInfo(BaseModel):
    name: str
    type: Literal["number", "string"]
    nullable: bool


class ModelInfo(BaseModel):
    model: str
    version: str
    task: str | None = None
    target: str | None = None
    classes: list[Label] | SkipJsonSchema[None] = _optional(
        description="Classifiers: the classes in the model's order (the order of multiclass `predictions`)."
    )
    positive: Label | SkipJsonSchema[None] = _optional(
        description="Binary classifiers: the class whose probability `predictions` holds."
    )
    features: list[FeatureInfo]
    training_window: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    spec_digest: str | None = None
    challenger: str | None = None
    previous_scored_beside: str | None = None
    rollout: str | None = None


class Health(BaseModel):
    status: str


class RegistryOutage(BaseModel):
    reachable: bool
    since: float = Field(description="Unix time of the first failed attempt")
    error: str
    serving: str = Field(description="'the loaded model' or 'nothing yet'")


class Ready(BaseModel):
    ready: bool
    version: str | None
    registry: Literal["ok"] | RegistryOutage = Field(
        description="'ok', or since when and why the model registry cannot be asked (the loaded model keeps serving)"
    )


_ERRORS = {
    400: "Malformed request: not JSON, or not a JSON object.",
    401: "Missing or wrong bearer token.",
    405: "Method not allowed on this path.",
    408: "The request body did not arrive in time.",
    413: "Too many rows, or too large a body.",
    415: "The body is not `application/json`.",
    422: "The request does not fit the model's schema; every field at fault is named.",
    503: "No model loaded yet, overloaded (see `Retry-After`), or the prediction log is unavailable.",
}


def request_models(
    schema: Schema, max_rows: int = 1000, unknown_fields: str = "ignore", allowed: Iterable[str] = ()
) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """The model-specific request models: (Instance, InstancesRequest, DataframeSplitRequest). An instance
    holds every feature (a number or a string, null where nullable) and may hold the `allowed` fields that are
    not features (the spec's key and timestamp, logged with the row); anything else only when unknown fields
    are ignored."""
    fields: dict[str, Any] = {}
    for i, name in enumerate((*schema.numeric, *schema.categorical)):
        kind = float if name in schema.numeric else str
        fields[f"f{i}"] = (kind | None if name in schema.nullable else kind, Field(alias=name, title=name))
    for i, name in enumerate(sorted(set(allowed) - set(schema.numeric) - set(schema.categorical))):
        fields[f"a{i}"] = (Any, _optional(alias=name, title=name))
    instance = create_model(
        "Instance", __config__=ConfigDict(extra="forbid" if unknown_fields == "reject" else "ignore"), **fields
    )
    explain = (bool, Field(default=False, description="Add each row's top feature contributions (TreeSHAP)."))
    instances = create_model(
        "InstancesRequest", instances=(list[instance], Field(min_length=1, max_length=max_rows)), explain=explain
    )
    frame = create_model(
        "DataframeSplit",
        columns=(list[str], Field(description="Feature names, one per value in each row of `data`.")),
        data=(
            list[list[float | str | None]],
            Field(description="Rows of values, in the order of `columns`.", min_length=1, max_length=max_rows),
        ),
    )
    split = create_model("DataframeSplitRequest", dataframe_split=(frame, ...), explain=explain)
    return instance, instances, split


def document(
    model_name: str,
    schema: Schema,
    *,
    max_rows: int = 1000,
    unknown_fields: str = "ignore",
    allowed: Iterable[str] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the v1 routes serving `model_name` with request schema `schema`, at most
    `max_rows` rows per request, unknown instance fields ignored or rejected (`unknown_fields`) but for the
    `allowed` ones."""
    instance, instances, split = request_models(schema, max_rows, unknown_fields, allowed)
    models: list[type[BaseModel]] = [
        instance,
        instances,
        split,
        PredictResponse,
        ErrorResponse,
        ModelInfo,
        Health,
        Ready,
    ]
    refs, definitions = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    schemas = definitions["$defs"]
    ref = {m: refs[(m, "validation")] for m in models}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{model_name} model endpoint",
            "version": "1",
            "description": f"Scores rows of `{model_name}`' features with the model version the registry's "
            f"champion alias points to; at most {max_rows} rows per request.",
        },
        "paths": _paths(model_name, ref, instances, split),
        "components": {
            "schemas": schemas,
            "responses": {
                f"E{s}": {"description": text, "content": {"application/json": {"schema": ref[ErrorResponse]}}}
                for s, text in _ERRORS.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required when the endpoint has a token.",
                },
                "metrics_bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required when the metrics have a token.",
                },
            },
        },
    }


def _paths(
    model_name: str,
    ref: dict[type[BaseModel], JsonSchemaValue],
    instances: type[BaseModel],
    split: type[BaseModel],
) -> dict[str, Any]:
    """The v1 routes: what each takes, answers and requires (`ref`: each model's schema reference)."""
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]

    def json_content(model: type[BaseModel]) -> dict[str, Any]:
        return {"application/json": {"schema": ref[model]}}

    def errors(*statuses: int) -> dict[str, dict[str, str]]:
        return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}

    predict = f"/v1/models/{model_name}/predict"
    return {
        predict: {
            "post": {
                "operationId": "predict",
                "summary": "Score rows",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"anyOf": [ref[instances], ref[split]]}}},
                },
                "responses": {
                    "200": {
                        "description": "The predictions, answered and logged by one model version.",
                        "content": json_content(PredictResponse),
                    },
                    **errors(400, 401, 405, 408, 413, 415, 422, 503),
                },
            }
        },
        f"/v1/models/{model_name}": {
            "get": {
                "operationId": "model_info",
                "summary": "The served version, its features, window and metrics",
                "security": bearer,
                "responses": {
                    "200": {"description": "The model.", "content": json_content(ModelInfo)},
                    **errors(401, 405, 503),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": {"description": "The process is up.", "content": json_content(Health)},
                    **errors(405),
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: a model is loaded",
                "security": [],
                "responses": {
                    "200": {"description": "Ready.", "content": json_content(Ready)},
                    "503": {"description": "No model loaded yet.", "content": json_content(Ready)},
                    **errors(405),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": [{"metrics_bearer": []}],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **errors(401, 405),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": bearer,
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **errors(401, 405, 503),
                },
            }
        },
    }
