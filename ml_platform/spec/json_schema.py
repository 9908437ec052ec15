"""The spec's JSON Schema, for editors: `ml-platform schema` prints it, and `docs/spec.schema.json` keeps it in
the repository, so a spec whose first line is `# yaml-language-server: $schema=<that file>` gets completion,
hover docs and unknown-field warnings from any editor speaking the YAML language server.

It describes what a spec author writes: the fields of `ModelSpec` and its sections with their descriptions,
types, bounds and defaults (durations as the author writes them, '10m'). The rules across fields (a feature the
source lacks, a window longer than the partitions) stay with `ml-platform check`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from ml_platform.spec.sections import ModelSpec

#: Where the repository keeps the schema, relative to its root (a test keeps it fresh).
SCHEMA_FILE = "docs/spec.schema.json"
REFRESH = f"ml-platform schema --output {SCHEMA_FILE}"
_NOT_WRITTEN = ("path", "deprecations")  # ModelSpec fields set by the loader, never part of the YAML


def _duration_text(value: timedelta) -> str:
    """A duration as a spec author writes it: the largest unit that divides it ('10m', '26h', '3d')."""
    milliseconds = round(value.total_seconds() * 1000)
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds and milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


class _SpecSchema(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return _duration_text(dft)
        return super().encode_default(dft)


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a model spec file."""
    schema = ModelSpec.model_json_schema(mode="validation", schema_generator=_SpecSchema)
    for field in _NOT_WRITTEN:
        schema["properties"].pop(field, None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ml_platform model spec",
        "description": "One YAML file per model: its data, features, training, gates, monitoring and serving. "
        "`ml-platform check` validates a spec fully, the rules across fields included.",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }


def spec_schema_text() -> str:
    """The schema as the repository keeps it: indented, keys in the models' order, one final newline."""
    return json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"
