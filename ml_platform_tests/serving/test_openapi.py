"""The endpoint's OpenAPI document: a valid OpenAPI 3.1 document whose instance schema is the model's own."""

from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from ml_platform.serving.openapi import document
from ml_platform.serving.validation import Schema, validate_rows

SCHEMA = Schema(numeric=("distance", "dep_hour"), categorical=("carrier",), nullable=frozenset({"dep_hour"}))


def _resolved(doc: dict, schema: dict) -> dict:
    """`schema` with its local $refs resolvable: a JSON Schema carrying the document's components."""
    return {**schema, "components": doc["components"]}


def test_the_document_is_valid_openapi_3_1():
    doc = document("flight_delay", SCHEMA, max_rows=50)
    assert doc["openapi"].startswith("3.1")
    OpenAPIV31SpecValidator(doc).validate()


def test_the_instance_is_the_models_schema():
    doc = document("flight_delay", SCHEMA, max_rows=50)
    instance = doc["components"]["schemas"]["Instance"]
    assert set(instance["required"]) == {"distance", "dep_hour", "carrier"}
    properties = instance["properties"]
    assert properties["distance"]["type"] == "number"
    assert {"type": "null"} in properties["dep_hour"]["anyOf"] and {"type": "number"} in properties["dep_hour"]["anyOf"]
    assert properties["carrier"]["type"] == "string"
    assert "additionalProperties" not in instance
    strict = document("flight_delay", SCHEMA, unknown_fields="reject")["components"]["schemas"]["Instance"]
    assert strict["additionalProperties"] is False
    keyed = document("flight_delay", SCHEMA, unknown_fields="reject", allowed={"flight_id", "distance"})
    keyed_instance = keyed["components"]["schemas"]["Instance"]
    assert keyed_instance["properties"]["flight_id"] == {"title": "flight_id"}  # any value, not required
    assert set(keyed_instance["required"]) == {"distance", "dep_hour", "carrier"}
    request = doc["components"]["schemas"]["InstancesRequest"]["properties"]["instances"]
    assert (request["minItems"], request["maxItems"]) == (1, 50)
    assert doc["components"]["schemas"]["DataframeSplit"]["properties"]["data"]["maxItems"] == 50


@pytest.mark.parametrize(
    "body, valid",
    [
        ({"instances": [{"distance": 1.0, "dep_hour": None, "carrier": "UA"}]}, True),
        ({"instances": [{"distance": 1, "dep_hour": 9, "carrier": "UA"}], "explain": True}, True),
        ({"dataframe_split": {"columns": ["distance", "dep_hour", "carrier"], "data": [[1.0, None, "UA"]]}}, True),
        ({"instances": [{"distance": None, "dep_hour": 9, "carrier": "UA"}]}, False),
        ({"instances": [{"distance": "far", "dep_hour": 9, "carrier": "UA"}]}, False),
        ({"instances": [{"dep_hour": 9, "carrier": "UA"}]}, False),
        ({"instances": []}, False),
        ({"instances": [{"distance": 1.0, "dep_hour": 9, "carrier": "UA"}] * 51}, False),
        ({"rows": []}, False),
    ],
)
def test_the_request_schema_agrees_with_the_endpoints_validation(body, valid):
    doc = document("flight_delay", SCHEMA, max_rows=50)
    predict = doc["paths"]["/v1/models/flight_delay/predict"]["post"]
    schema = _resolved(doc, predict["requestBody"]["content"]["application/json"]["schema"])
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is valid
    if valid and "instances" in body:
        validate_rows(body["instances"], SCHEMA)  # what the document admits, the endpoint scores


def test_responses_security_and_routes():
    doc = document("flight_delay", SCHEMA)
    assert set(doc["paths"]) == {
        "/v1/models/flight_delay/predict",
        "/v1/models/flight_delay",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    }
    assert doc["paths"]["/openapi.json"]["get"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/metrics"]["get"]["security"] == [{"metrics_bearer": []}]
    predict = doc["paths"]["/v1/models/flight_delay/predict"]["post"]
    assert set(predict["responses"]) == {"200", "400", "401", "405", "408", "413", "415", "422", "503"}
    assert predict["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Required when the endpoint has a token.",
    }
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    assert set(error["properties"]) == {"error", "errors", "errors_total", "note", "request_id"}
    response = doc["components"]["schemas"]["PredictResponse"]
    assert set(response["required"]) == {"predictions", "model", "version", "request_id"}
    assert "default" not in response["properties"]["explanations"]
    answer = {
        "predictions": [0.2],
        "model": "flight_delay",
        "version": "1",
        "request_id": "ab",
        "explanations": [[{"feature": "distance", "contribution": 0.1}]],
    }
    assert jsonschema.Draft202012Validator(_resolved(doc, {"$ref": "#/components/schemas/PredictResponse"})).is_valid(
        answer
    )
    assert not jsonschema.Draft202012Validator(
        _resolved(doc, {"$ref": "#/components/schemas/PredictResponse"})
    ).is_valid({**answer, "explanations": None})
