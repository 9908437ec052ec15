"""The Open Inference Protocol (KServe / Triton / MLServer "V2" REST) for one model: pure functions, no ASGI.

    GET  /v2/models/<model>          model_metadata(): one input tensor per feature, output "predict" (and, for a
                                     classifier, "label": the predicted class as text)
    POST /v2/models/<model>/infer    rows_of(body) -> the v1 route's rows -> predict_records -> infer_response()

Every feature is one input tensor holding one value per row: shape [n] (or [n, 1]), `data` flat in row-major
order or nested as the shape says; numbers for numeric features (FP16/32/64, INT8..64, UINT8..64), JSON strings
for categorical ones (BYTES). `null` stands for a missing value where the model allows one (the v1 route's rule).
Binary tensor data (the binary-data extension) is not spoken: JSON only. Errors are `{"error": message}`.

`rows_of` checks everything about the request itself, naming the field at fault (`inputs[2].data[7]`), and then
runs the rows through the v1 route's `validate_rows`, so a row the v2 route scores is one the v1 route would.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ml_platform.serving.validation import ErrorItem, RequestError, Row, Schema, validate_rows

if TYPE_CHECKING:
    from ml_platform.core.labels import Labels

OUTPUT = "predict"
LABEL = "label"  # a classifier's predicted class per row, as text (BYTES)
PLATFORM = "lightgbm"
BYTES = "BYTES"
_INTEGERS = {
    f"{kind}{bits}": ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if kind == "INT" else (0, 2**bits - 1))
    for kind in ("INT", "UINT")
    for bits in (8, 16, 32, 64)
}
_FLOATS = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": sys.float_info.max}  # largest finite
NUMERIC_DATATYPES = (*_FLOATS, *_INTEGERS)
MAX_ID_CHARS = 256
MAX_ERROR_CHARS = 300
_MAX_ERRORS = 50


class InferRows(NamedTuple):
    """An inference request as `rows_of` reads it: its rows (as the v1 route scores them) and its own `id`."""

    rows: list[Row]
    id: str | None


class _Column(NamedTuple):
    """One input tensor read: the feature it holds and its value per row."""

    name: str
    values: list[Any]


def model_metadata(
    name: str,
    version: str,
    schema: Schema,
    task: str | None,
    *,
    n_classes: int | None = None,
    labels: Labels | None = None,
) -> dict[str, Any]:
    """The model metadata response: the features as input tensors, the prediction as output `predict`
    (shape [-1] for binary and regression, [-1, n_classes] for multiclass; -1 when the count is not given), and
    for a classifier (`labels` given) the output `label`, so clients learn the class without the class order."""
    inputs = [{"name": n, "datatype": "FP64", "shape": [-1]} for n in schema.numeric] + [
        {"name": n, "datatype": BYTES, "shape": [-1]} for n in schema.categorical
    ]
    shape = [-1, n_classes or -1] if task == "multiclass" else [-1]
    outputs = [{"name": OUTPUT, "datatype": "FP64", "shape": shape}]
    if labels is not None:
        outputs.append({"name": LABEL, "datatype": BYTES, "shape": [-1]})
    return {"name": name, "versions": [str(version)], "platform": PLATFORM, "inputs": inputs, "outputs": outputs}


def infer_response(
    name: str,
    version: str,
    request_id: str | None,
    predictions: list[float] | list[list[float]],
    task: str | None,
    *,
    labels: list[Any] | None = None,
    outputs: list[str] | None = None,
) -> dict[str, Any]:
    """The inference response of `predict_records`' output: shape [n] (binary: the positive class's probability;
    regression: the value) or [n, k] (multiclass: one probability per class), data flat in row-major order.
    With `labels` (a classifier's predicted class per row) a `label` tensor follows, its elements as text.
    `outputs` (the names the request asked for) limits the answer to those, so a client that asks for
    `predict` only gets exactly the answer it got before labels existed. `id` echoes the request's and is left
    out when there is none."""
    values = np.asarray(predictions, dtype=np.float64)
    if task == "multiclass" and values.ndim == 1:  # one row's class probabilities
        values = values.reshape(1, -1)
    response: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if request_id is not None:
        response["id"] = request_id
    tensors: dict[str, dict[str, Any]] = {
        OUTPUT: {"name": OUTPUT, "datatype": "FP64", "shape": list(values.shape), "data": values.ravel().tolist()}
    }
    if labels is not None:
        tensors[LABEL] = {
            "name": LABEL,
            "datatype": BYTES,
            "shape": [len(labels)],
            "data": [str(label) for label in labels],
        }
    wanted: Iterable[str] = tensors if not outputs else dict.fromkeys(outputs)
    response["outputs"] = [tensors[n] for n in wanted if n in tensors]
    return response


def output_names(labels: Labels | None) -> tuple[str, ...]:
    """The outputs a model answers: `predict`, and `label` for a classifier (`labels` not None)."""
    return (OUTPUT,) if labels is None else (OUTPUT, LABEL)


def requested_outputs(body: dict[str, Any]) -> list[str] | None:
    """The output names a (validated) request asks for, in its order; None when it names none (all of them)."""
    outputs = body.get("outputs")
    return [output["name"] for output in outputs] if outputs else None


def error_body(error: RequestError) -> dict[str, str]:
    """The protocol's error response: `{"error": "<field>: <message>"}` of the first error, bounded in length,
    saying how many more there are."""
    errors = error.errors or [{"field": "request", "error": "rejected"}]
    first = errors[0]
    message = f"{first.get('field', 'request')}: {first.get('error', 'rejected')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return {"error": message}


def rows_of(body: object, schema: Schema, max_rows: int, outputs: tuple[str, ...] = (OUTPUT,)) -> InferRows:
    """The rows of an inference request (one dict per row, feature name -> value, as the v1 route scores them)
    and the request's `id`; `outputs` are the names the model answers (a request may ask for those only).
    Raises RequestError: 400 when the body is not a request object or carries binary data, 413 past `max_rows`
    rows, 422 naming every other field at fault (then `validate_rows`' own 422).
    Length: every check of the request's shape in the order the protocol defines it, each naming its field."""
    if not isinstance(body, dict):
        raise RequestError(400, [{"field": "body", "error": "expected a JSON object with 'inputs'"}])
    errors: list[ErrorItem] = []
    request_id = body.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID_CHARS):
        errors.append({"field": "id", "error": f"expected a string of at most {MAX_ID_CHARS} characters"})
    if "parameters" in body and not isinstance(body["parameters"], dict):
        errors.append({"field": "parameters", "error": "expected an object"})
    errors += _outputs_errors(body.get("outputs"), outputs)
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        errors.append(
            {
                "field": "inputs",
                "error": "missing: send a list of input tensors, one per feature"
                if inputs is None
                else "expected a list of input tensors",
            }
        )
        raise RequestError(422, errors)
    if not inputs:
        raise RequestError(422, [*errors, {"field": "inputs", "error": "no inputs: send one tensor per feature"}])

    kinds = dict.fromkeys(schema.numeric, "number") | dict.fromkeys(schema.categorical, "string")
    columns: dict[str, list[Any]] = {}
    count: int | None = None  # the row count, set by the first input read
    counted_by = 0  # the index of that input
    for k, tensor in enumerate(inputs):
        where = f"inputs[{k}]"
        column = _tensor(tensor, where, kinds, schema.nullable, columns, max_rows)
        if isinstance(column, dict):
            errors.append(column)
        else:
            name, values = column.name, column.values
            if count is None:
                count, counted_by = len(values), k
            elif len(values) != count:
                errors.append(
                    {
                        "field": f"{where}.shape",
                        "error": f"{len(values)} rows; inputs[{counted_by}] has {count}: every input holds one "
                        "value per row",
                    }
                )
            columns[name] = values
        if len(errors) > _MAX_ERRORS:
            break
    if errors:
        raise RequestError(422, errors)
    missing = [n for n in kinds if n not in columns]
    if missing:
        raise RequestError(
            422,
            [
                {"field": "inputs", "error": f"missing input '{n}' ({'BYTES' if kinds[n] == 'string' else 'FP64'})"}
                for n in missing
            ],
        )
    if not count:
        raise RequestError(422, [{"field": "inputs[0].shape", "error": "no rows to score"}])
    rows = [{n: columns[n][i] for n in kinds} for i in range(count)]
    validate_rows(rows, schema, field="rows")
    return InferRows(rows, request_id)


def _outputs_errors(outputs: object, names: tuple[str, ...] = (OUTPUT,)) -> list[ErrorItem]:
    """Requested outputs: absent, or a list of `{"name": <one of names>, "parameters"?}`. Asking for binary output
    data is allowed and answered in JSON (the binary-data extension is optional for a server)."""
    if outputs is None:
        return []
    if not isinstance(outputs, list):
        return [{"field": "outputs", "error": f"expected a list of {{'name': '{OUTPUT}'}}"}]
    known = (
        f"the model's only output is '{names[0]}'"
        if len(names) == 1
        else "the model's outputs are " + ", ".join(f"'{n}'" for n in names)
    )
    errors: list[ErrorItem] = []
    for i, output in enumerate(outputs):
        if not isinstance(output, dict):
            errors.append({"field": f"outputs[{i}]", "error": "expected an object with a 'name'"})
        elif output.get("name") not in names:
            errors.append(
                {"field": f"outputs[{i}].name", "error": f"unknown output {_shown(output.get('name'))}; {known}"}
            )
        elif "parameters" in output and not isinstance(output["parameters"], dict):
            errors.append({"field": f"outputs[{i}].parameters", "error": "expected an object"})
    return errors


def _tensor(
    tensor: object,
    where: str,
    kinds: dict[str, str],
    nullable: frozenset[str],
    seen: dict[str, list[Any]],
    max_rows: int,
) -> _Column | ErrorItem:
    """The feature one input tensor holds and its value per row, or the first error found in it."""
    if not isinstance(tensor, dict):
        return {"field": where, "error": "expected an object with name, shape, datatype and data"}
    name = tensor.get("name")
    if not isinstance(name, str):
        return {"field": f"{where}.name", "error": "missing" if name is None else "expected a string"}
    if name not in kinds:
        return {
            "field": f"{where}.name",
            "error": f"unknown input {_shown(name)}; the model's inputs are its features: {', '.join(kinds)}",
        }
    if name in seen:
        return {"field": f"{where}.name", "error": f"duplicate input '{name}'"}
    datatype = tensor.get("datatype")
    accepted = NUMERIC_DATATYPES if kinds[name] == "number" else (BYTES,)
    if datatype not in accepted:
        return {
            "field": f"{where}.datatype",
            "error": f"{_shown(datatype)} does not fit {kinds[name]} feature '{name}': expected "
            + ("FP64 (or FP16, FP32, INT8..64, UINT8..64)" if kinds[name] == "number" else BYTES),
        }
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        return {"field": f"{where}.shape", "error": "expected a list of non-negative integers"}
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        return {"field": f"{where}.shape", "error": f"{shape}: a feature holds one value per row, shape [n] or [n, 1]"}
    if shape[0] > max_rows:
        raise RequestError(
            413, [{"field": f"{where}.shape", "error": f"{shape[0]} rows; at most {max_rows} per request"}]
        )
    parameters = tensor.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        return {"field": f"{where}.parameters", "error": "expected an object"}
    if parameters and "binary_data_size" in parameters:
        raise RequestError(
            400,
            [
                {
                    "field": f"{where}.parameters.binary_data_size",
                    "error": "binary tensor data is not supported: send the values in 'data'",
                }
            ],
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        return {"field": f"{where}.data", "error": "missing" if data is None else "expected a list"}
    values = _flat(data, shape, f"{where}.data")
    if isinstance(values, dict):
        return values
    for i, value in enumerate(values):
        if value is None:
            if name not in nullable:
                return {"field": f"{where}.data[{i}]", "error": f"null is not allowed: '{name}' is not nullable"}
        elif (problem := _element_error(value, datatype)) is not None:
            return {"field": f"{where}.data[{i}]", "error": problem}
    return _Column(name, values)


def _flat(data: list[Any], shape: list[int], where: str) -> list[Any] | ErrorItem:
    """The values of `data` in row-major order: data either flat (shape's product of scalars) or nested exactly
    as the shape says; or the error."""
    size = math.prod(shape)
    if all(not isinstance(v, (list, dict)) for v in data):
        if len(data) != size:
            return {"field": where, "error": f"{len(data)} values; shape {shape} holds {size}"}
        return data
    if len(shape) == 1:  # nested, but the shape says flat
        i = next(i for i, v in enumerate(data) if isinstance(v, (list, dict)))
        return {"field": f"{where}[{i}]", "error": f"nested deeper than shape {shape}: expected a scalar"}
    if len(data) != shape[0]:
        return {"field": where, "error": f"{len(data)} rows; shape {shape} holds {shape[0]}"}
    values: list[Any] = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != shape[1]:
            return {"field": f"{where}[{i}]", "error": f"expected a list of {shape[1]} value (shape {shape})"}
        if isinstance(row[0], (list, dict)):
            return {"field": f"{where}[{i}][0]", "error": f"nested deeper than shape {shape}: expected a scalar"}
        values.append(row[0])
    return values


def _element_error(value: Any, datatype: str) -> str | None:
    """Why a non-null JSON value is not an element of `datatype`, or None."""
    if datatype == BYTES:
        return None if isinstance(value, str) else f"expected a string (BYTES), got {_shown(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number ({datatype}), got {_shown(value)}"
    if datatype in _INTEGERS:
        low, high = _INTEGERS[datatype]
        if not isinstance(value, int):
            return f"expected an integer ({datatype}), got {_shown(value)}"
        if not low <= value <= high:
            return f"{value} is out of range for {datatype} [{low}, {high}]"
        return None
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > _FLOATS[datatype]:
        return f"{_shown(value)} is out of range for {datatype}"
    return None


def _shown(value: object, limit: int = 60) -> str:
    """A value quoted for an error message, bounded in length."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
