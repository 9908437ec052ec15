"""The Open Inference Protocol ("V2") for one model: request parsing and responses as pure functions, then the
wired routes over real HTTP with Triton's own client."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import requests

from ml_platform.serving.v2 import error_body, infer_response, model_metadata, rows_of
from ml_platform.serving.validation import RequestError, Schema

SCHEMA = Schema(numeric=("distance", "dep_hour"), categorical=("carrier",), nullable=frozenset({"dep_hour"}))


def _request(**overrides) -> dict:
    """A valid two-row request: one tensor per feature."""
    body = {
        "id": "r-1",
        "inputs": [
            {"name": "distance", "shape": [2], "datatype": "FP64", "data": [1400.0, 760.5]},
            {"name": "dep_hour", "shape": [2, 1], "datatype": "INT32", "data": [[9], [None]]},
            {"name": "carrier", "shape": [2], "datatype": "BYTES", "data": ["UA", "DL"]},
        ],
    }
    body.update(overrides)
    return body


def _with_input(k: int, **fields) -> dict:
    body = _request()
    body["inputs"][k].update(fields)
    return body


def test_rows_of_a_valid_request_are_the_v1_rows():
    rows, request_id = rows_of(_request(), SCHEMA, max_rows=10)
    assert request_id == "r-1"
    assert rows == [
        {"distance": 1400.0, "dep_hour": 9, "carrier": "UA"},
        {"distance": 760.5, "dep_hour": None, "carrier": "DL"},
    ]
    flat = _with_input(1, data=[9, None])  # shape [2, 1] sent flat, row-major
    assert rows_of(flat, SCHEMA, 10)[0] == rows
    reordered = _request(
        inputs=list(reversed(_request()["inputs"])),
        parameters={"priority": 1},
        outputs=[{"name": "predict", "parameters": {"binary_data": False}}],
    )
    del reordered["id"]
    assert rows_of(reordered, SCHEMA, 10) == (rows, None)
    for datatype in ("FP16", "FP32", "INT8", "INT64", "UINT8", "UINT64"):
        assert rows_of(_with_input(0, datatype=datatype, data=[14, 76]), SCHEMA, 10)[0][1]["distance"] == 76


def _without(k: int, key: str) -> dict:
    body = _request()
    del body["inputs"][k][key]
    return body


def _duplicate() -> dict:
    body = _request()
    body["inputs"].append(copy.deepcopy(body["inputs"][0]))
    return body


MALFORMED = [
    # (case, body, status, the field the first error names)
    ("body not an object", [1, 2], 400, "body"),
    ("no inputs key", {"id": "x"}, 422, "inputs"),
    ("inputs not a list", _request(inputs={"distance": [1]}), 422, "inputs"),
    ("no inputs", _request(inputs=[]), 422, "inputs"),
    ("input not an object", _request(inputs=[["distance"]]), 422, "inputs[0]"),
    ("missing name", _without(0, "name"), 422, "inputs[0].name"),
    ("name not a string", _with_input(0, name=7), 422, "inputs[0].name"),
    ("unknown input", _with_input(2, name="colour"), 422, "inputs[2].name"),
    ("duplicate input", _duplicate(), 422, "inputs[3].name"),
    ("missing input", _request(inputs=_request()["inputs"][:2]), 422, "inputs"),
    ("BYTES for a number", _with_input(0, datatype="BYTES", data=["1", "2"]), 422, "inputs[0].datatype"),
    ("FP64 for a category", _with_input(2, datatype="FP64", data=[1.0, 2.0]), 422, "inputs[2].datatype"),
    ("unknown datatype", _with_input(0, datatype="FLOAT"), 422, "inputs[0].datatype"),
    ("BOOL for a number", _with_input(0, datatype="BOOL", data=[True, False]), 422, "inputs[0].datatype"),
    ("missing datatype", _without(0, "datatype"), 422, "inputs[0].datatype"),
    ("missing shape", _without(0, "shape"), 422, "inputs[0].shape"),
    ("shape not a list", _with_input(0, shape=2), 422, "inputs[0].shape"),
    ("empty shape", _with_input(0, shape=[]), 422, "inputs[0].shape"),
    ("negative dimension", _with_input(0, shape=[-1]), 422, "inputs[0].shape"),
    ("float dimension", _with_input(0, shape=[2.0]), 422, "inputs[0].shape"),
    ("bool dimension", _with_input(0, shape=[True, 1]), 422, "inputs[0].shape"),
    ("two values per row", _with_input(0, shape=[1, 2]), 422, "inputs[0].shape"),
    ("rank 3", _with_input(0, shape=[2, 1, 1]), 422, "inputs[0].shape"),
    ("shape product exceeds data", _with_input(0, shape=[3]), 422, "inputs[0].data"),
    ("shape product below data", _with_input(2, shape=[1]), 422, "inputs[2].data"),
    ("nested rows short", _with_input(1, shape=[3, 1]), 422, "inputs[1].data"),
    ("rows differ across inputs", _with_input(2, shape=[1], data=["UA"]), 422, "inputs[2].shape"),
    ("nested deeper than shape", _with_input(0, data=[[1400.0], [760.5]]), 422, "inputs[0].data[0]"),
    ("nested two deep", _with_input(1, data=[[[9]], [1]]), 422, "inputs[1].data[0][0]"),
    ("mixed nesting", _with_input(1, data=[[9], 1]), 422, "inputs[1].data[1]"),
    ("object as a value", _with_input(0, data=[{"v": 1}, 2]), 422, "inputs[0].data[0]"),
    ("missing data", _without(0, "data"), 422, "inputs[0].data"),
    ("data not a list", _with_input(0, data="1400,760"), 422, "inputs[0].data"),
    ("string in a number", _with_input(0, data=[1400.0, "far"]), 422, "inputs[0].data[1]"),
    ("bool in a number", _with_input(0, data=[True, 1.0]), 422, "inputs[0].data[0]"),
    ("float in an INT", _with_input(1, data=[[9.5], [1]]), 422, "inputs[1].data[0]"),
    ("INT8 out of range", _with_input(1, datatype="INT8", data=[[300], [1]]), 422, "inputs[1].data[0]"),
    ("negative UINT", _with_input(1, datatype="UINT16", data=[[-1], [1]]), 422, "inputs[1].data[0]"),
    ("FP16 out of range", _with_input(0, datatype="FP16", data=[1e6, 1.0]), 422, "inputs[0].data[0]"),
    ("number in BYTES", _with_input(2, data=["UA", 5]), 422, "inputs[2].data[1]"),
    ("null not allowed", _with_input(0, data=[None, 1.0]), 422, "inputs[0].data[0]"),
    ("parameters not an object", _with_input(0, parameters=[1]), 422, "inputs[0].parameters"),
    ("binary data", _with_input(0, parameters={"binary_data_size": 16}), 400, "inputs[0].parameters.binary_data_size"),
    ("request parameters not an object", _request(parameters="fast"), 422, "parameters"),
    ("id not a string", _request(id=5), 422, "id"),
    ("id too long", _request(id="x" * 257), 422, "id"),
    ("outputs not a list", _request(outputs={"name": "predict"}), 422, "outputs"),
    ("unknown output", _request(outputs=[{"name": "probabilities"}]), 422, "outputs[0].name"),
    ("output not an object", _request(outputs=["predict"]), 422, "outputs[0]"),
    (
        "no rows",
        {"inputs": [{**t, "shape": [0] if len(t["shape"]) == 1 else [0, 1], "data": []} for t in _request()["inputs"]]},
        422,
        "inputs[0].shape",
    ),
    ("too many rows", _with_input(0, shape=[11], data=[1.0] * 11), 413, "inputs[0].shape"),
]


@pytest.mark.parametrize("case, body, status, field", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_every_malformed_request_is_refused_naming_its_field(case, body, status, field):
    with pytest.raises(RequestError) as raised:
        rows_of(body, SCHEMA, max_rows=10)
    assert (raised.value.status, raised.value.errors[0]["field"]) == (status, field), raised.value.errors
    message = error_body(raised.value)["error"]
    assert message.startswith(f"{field}: ") and len(message) <= 300


def test_every_bad_input_is_named_at_once():
    body = _with_input(0, datatype="BYTES")
    body["inputs"][2]["name"] = "colour"
    with pytest.raises(RequestError) as raised:
        rows_of(body, SCHEMA, 10)
    assert [e["field"] for e in raised.value.errors] == ["inputs[0].datatype", "inputs[2].name"]
    assert error_body(raised.value)["error"].endswith("(and 1 more)")


def test_error_body_is_bounded():
    error = RequestError(422, [{"field": "inputs[0].name", "error": "x" * 5000}])
    assert len(error_body(error)["error"]) == 300


def test_metadata_lists_one_input_per_feature():
    metadata = model_metadata("flight_delay", "3", SCHEMA, "binary")
    assert metadata == {
        "name": "flight_delay",
        "versions": ["3"],
        "platform": "lightgbm",
        "inputs": [
            {"name": "distance", "datatype": "FP64", "shape": [-1]},
            {"name": "dep_hour", "datatype": "FP64", "shape": [-1]},
            {"name": "carrier", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
    }
    assert model_metadata("m", "1", SCHEMA, "multiclass", n_classes=4)["outputs"][0]["shape"] == [-1, 4]
    assert model_metadata("m", "1", SCHEMA, "regression")["outputs"][0]["shape"] == [-1]


def test_infer_response_per_task():
    binary = infer_response("m", "2", "r-1", np.array([0.25, 0.5]), "binary")
    assert binary == {
        "model_name": "m",
        "model_version": "2",
        "id": "r-1",
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [2], "data": [0.25, 0.5]}],
    }
    multi = infer_response("m", "2", None, np.array([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]]), "multiclass")
    assert "id" not in multi
    assert multi["outputs"][0]["shape"] == [3, 2] and multi["outputs"][0]["data"] == [0.1, 0.9, 0.6, 0.4, 0.5, 0.5]
    assert infer_response("m", "2", None, [3.5], "regression")["outputs"][0]["shape"] == [1]


def test_a_classifier_answers_a_label_tensor_unless_the_request_limits_its_outputs():
    labels = ["yes", "no"]
    both = infer_response("m", "2", None, np.array([0.75, 0.25]), "binary", labels=labels)
    assert [o["name"] for o in both["outputs"]] == ["predict", "label"]
    assert both["outputs"][1] == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]}
    plain = infer_response("m", "2", None, np.array([0.75, 0.25]), "binary")
    assert infer_response("m", "2", None, np.array([0.75, 0.25]), "binary", labels=labels, outputs=["predict"]) == plain
    only = infer_response("m", "2", None, np.array([0.75, 0.25]), "binary", labels=[1, 0], outputs=["label"])
    assert only["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["1", "0"]}]
    assert [o["name"] for o in model_metadata("m", "1", SCHEMA, "binary", labels=object())["outputs"]] == [
        "predict",
        "label",
    ]
    asked = _request(outputs=[{"name": "label"}, {"name": "predict"}])
    assert rows_of(asked, SCHEMA, 10, ("predict", "label"))[1] == "r-1"
    with pytest.raises(RequestError) as refused:  # a regressor has no label
        rows_of(asked, SCHEMA, 10)
    assert refused.value.errors[0]["field"] == "outputs[0].name"


# --- the wired routes, over real HTTP ---------------------------------------------------------------------


def _records(frame) -> list[dict]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]


def test_triton_client_scores_what_the_v1_route_scores(trained, start_server):
    """Triton's own HTTP client: server live and ready, the model's metadata, and an infer call with one input per
    feature, answered with the v1 route's numbers and logged like a v1 request."""
    import tritonclient.http as triton

    from ml_platform.serving.prediction_log import read_log

    spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    complete = holdout.dropna().head(25)  # a tensor has no missing values: JSON has no NaN, BYTES no None
    rows = _records(complete)
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("flight_delay")
        metadata = client.get_model_metadata("flight_delay")
        assert metadata["name"] == "flight_delay" and metadata["platform"] == "lightgbm"
        assert {t["name"] for t in metadata["inputs"]} == set(spec.features.names)
        assert metadata["outputs"] == [
            {"name": "predict", "datatype": "FP64", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ]
        inputs = []
        for tensor in metadata["inputs"]:
            values = [row[tensor["name"]] for row in rows]
            array = np.array(values, dtype=object if tensor["datatype"] == "BYTES" else np.float64)
            infer_input = triton.InferInput(tensor["name"], [len(rows)], tensor["datatype"])
            infer_input.set_data_from_numpy(array, binary_data=False)  # JSON tensors: no binary extension
            inputs.append(infer_input)
        before = len(read_log(server.log_path))
        result = client.infer(
            "flight_delay",
            inputs,
            request_id="triton-1",
            outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
        )
    finally:
        client.close()
    predictions = result.as_numpy("predict")
    assert result.get_response()["id"] == "triton-1" and predictions.shape == (len(rows),)
    v1 = requests.post(server.predict_url(), json={"instances": rows}, timeout=10).json()["predictions"]
    assert np.max(np.abs(predictions - np.asarray(v1))) <= 1e-12
    log = read_log(server.log_path)
    assert len(log) == before + 2  # the infer call, then the v1 call
    infer = log.iloc[before]
    assert infer["rows"] == len(rows)
    assert np.max(np.abs(np.asarray(json.loads(infer["outputs"])) - predictions)) <= 1e-12


def _v2_body(rows: list[dict], spec) -> dict:
    numeric = set(spec.features.all_numeric)
    return {
        "inputs": [
            {
                "name": n,
                "shape": [len(rows)],
                "datatype": "FP64" if n in numeric else "BYTES",
                "data": [row[n] for row in rows],
            }
            for n in spec.features.names
        ]
    }


def test_malformed_v2_requests_get_a_4xx_naming_the_field(trained, start_server):
    from ml_platform.serving.prediction_log import read_log

    spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    url = f"{server.url}/v2/models/flight_delay/infer"
    rows = _records(holdout.dropna().head(3))
    valid = _v2_body(rows, spec)
    names = [t["name"] for t in valid["inputs"]]
    carrier, distance = names.index("carrier"), names.index("distance")

    def changed(k: int, **fields) -> dict:
        body = copy.deepcopy(valid)
        body["inputs"][k].update(fields)
        return body

    cases = [
        ("malformed JSON", b"{not json", 400, "body"),
        ("not an object", [1], 400, "body"),
        ("no inputs", {"inputs": []}, 422, "inputs"),
        ("unknown input", changed(carrier, name="colour"), 422, f"inputs[{carrier}].name"),
        ("duplicate input", {"inputs": valid["inputs"] + [valid["inputs"][0]]}, 422, f"inputs[{len(names)}].name"),
        ("missing input", {"inputs": valid["inputs"][1:]}, 422, "inputs"),
        (
            "BYTES for a number",
            changed(distance, datatype="BYTES", data=["1", "2", "3"]),
            422,
            f"inputs[{distance}].datatype",
        ),
        ("shape and data disagree", changed(distance, shape=[4]), 422, f"inputs[{distance}].data"),
        ("rows differ", changed(carrier, shape=[1], data=["UA"]), 422, f"inputs[{carrier}].shape"),
        ("nested deeper than shape", changed(distance, data=[[1.0], [2.0], [3.0]]), 422, f"inputs[{distance}].data[0]"),
        ("string in a number", changed(distance, data=[1.0, "far", 3.0]), 422, f"inputs[{distance}].data[1]"),
        ("too many rows", changed(distance, shape=[1001], data=[1.0] * 1001), 413, f"inputs[{distance}].shape"),
    ]
    failures = []
    for case, body, status, field in cases:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=10)
        error = response.json().get("error", "")
        if response.status_code != status or not error.startswith(f"{field}: "):
            failures.append((case, response.status_code, error))
    assert failures == []
    assert len(read_log(server.log_path)) == 0, "refused requests must not be logged as predictions"
    ok = requests.post(url, json=valid, timeout=10)
    assert ok.status_code == 200 and ok.json()["outputs"][0]["shape"] == [3]
