"""The generated parts of the documentation, built from the code at every `mkdocs build` so they cannot drift.

A page holds a marker line, `<!-- generated: NAME -->`, and this hook (mkdocs.yml `hooks:`) replaces it:

- `spec-reference`: every field of a model spec, section by section (type, default, description), read off
  the spec's JSON Schema (`ml_platform.spec.json_schema`, the one editors get from `ml-platform schema`);
- `openapi`: the endpoint's OpenAPI document (`ml_platform.serving.openapi`) for the bundled spec, as the served
  `GET /openapi.json` describes it: its routes and their answers, then the whole document.

Nothing here imports mkdocs: the functions are plain text in, text out (a test calls them too).
"""

from __future__ import annotations

import json
import re
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs hook: replace each marker by what it names."""
    return MARKER.sub(lambda match: GENERATORS[match.group(1)](), markdown)


# --- the spec's fields -----------------------------------------------------------------------------------


def _anchor(path: str) -> str:
    return "spec-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _is_duration(schema: dict[str, Any]) -> bool:
    return any("ms|s|m|min|h|d|w" in option.get("pattern", "") for option in schema.get("anyOf", []))


def _type(schema: dict[str, Any], sections: dict[str, str]) -> str:
    """A field's type in a few words: `enum` values, `integer ≥ 1`, `list of string`, a link to a section."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{sections[name]}](#{_anchor(sections[name])})" if name in sections else f"`{name}`"
    if _is_duration(schema):
        return "duration"
    if "anyOf" in schema or "oneOf" in schema:
        options = [o for o in schema.get("anyOf", schema.get("oneOf", [])) if o.get("type") != "null"]
        nullable = len(options) < len(schema.get("anyOf", []))
        return " or ".join(dict.fromkeys([*(_type(o, sections) for o in options), *(["null"] if nullable else [])]))
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v) if not isinstance(v, str) else v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        text = f"list of {_type(schema.get('items', {}), sections)}"
    elif kind == "object":
        values = schema.get("additionalProperties")
        text = f"map of name → {_type(values, sections)}" if isinstance(values, dict) and values else "mapping"
    elif schema.get("format") == "date":
        text = "date"
    else:
        text = kind
    bounds = [
        form.format(schema[key])
        for key, form in (
            ("minimum", "≥ {}"),
            ("exclusiveMinimum", "> {}"),
            ("maximum", "≤ {}"),
            ("exclusiveMaximum", "< {}"),
            ("minItems", "at least {} items"),
            ("maxItems", "at most {} items"),
        )
        if key in schema
    ]
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`")
    return text + (f", {', '.join(bounds)}" if bounds else "")


def _default(name: str, schema: dict[str, Any], required: list[str]) -> str:
    if "default" in schema:
        value = schema["default"]
        return "—" if value is None else f"`{value if isinstance(value, str) else json.dumps(value)}`"
    if name in required:
        return "**required**"
    return "its defaults" if "$ref" in schema else "empty"


def _sections(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every section in the order a spec reads: (path, definition name, definition), the spec itself first."""
    definitions = schema["$defs"]
    found: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(path: str, name: str, definition: dict[str, Any]) -> None:
        found.append((path, name, definition))
        seen.add(name)
        for field, prop in definition.get("properties", {}).items():
            reached = [(prop, ""), *((o, "") for o in (*prop.get("anyOf", []), *prop.get("oneOf", [])))]
            for key, suffix in (("additionalProperties", ".<name>"), ("items", "[]")):
                if isinstance(prop.get(key), dict):
                    reached.append((prop[key], suffix))
            for ref, suffix in ((r["$ref"].rsplit("/", 1)[-1], s) for r, s in reached if "$ref" in r):
                if ref not in seen:
                    kind = definitions[ref]["properties"].get("kind", {}).get("const")
                    where = f"{path}.{field}{suffix}".lstrip(".") + (f" (kind: {kind})" if kind else "")
                    visit(where, ref, definitions[ref])

    visit("", "ModelSpec", schema)
    return found


def spec_reference() -> str:
    """The field reference: one table per section of a spec."""
    from ml_platform.spec.json_schema import spec_schema

    schema = spec_schema()
    sections = _sections(schema)
    anchors = {name: path or "the spec" for path, name, _ in sections}  # the first place each is reached
    lines: list[str] = []
    for path, _, definition in sections:
        title = f"`{path}`" if path else "The spec's top level"
        lines += [f"### {title} {{#{_anchor(path or 'the spec')}}}", ""]
        if path and definition.get("description"):
            lines += [_cell(definition["description"]), ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        required = definition.get("required", [])
        for field, prop in definition["properties"].items():
            lines.append(
                f"| `{field}` | {_type(prop, anchors)} | {_default(field, prop, required)} "
                f"| {_cell(prop.get('description', ''))} |"
            )
        lines.append("")
    return "\n".join(lines)


# --- the endpoint's OpenAPI document ----------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The document `GET /openapi.json` serves for the bundled spec's model (features, types and nullability as
    its training records them)."""
    from ml_platform.serving.openapi import document
    from ml_platform.serving.validation import Schema
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    columns = spec.expectations.columns
    schema = Schema(
        numeric=tuple(spec.features.all_numeric),
        categorical=tuple(spec.features.all_categorical),
        nullable=frozenset(n for n in spec.features.names if n not in columns or columns[n].nullable),
    )
    besides = sorted({spec.timestamp, spec.key or spec.timestamp} - set(spec.features.names))
    return document(
        spec.name,
        schema,
        max_rows=spec.serving.max_rows,
        unknown_fields=spec.serving.unknown_fields,
        allowed=besides,
    )


def openapi_reference() -> str:
    """The routes (what each takes and answers, and the token it needs), then the whole document."""
    doc = openapi_document()
    lines = ["| route | what it does | token | answers |", "|---|---|---|---|"]
    for route, methods in doc["paths"].items():
        for method, operation in methods.items():
            token = "yes" if operation["security"] else "no"
            if operation["security"] and "metrics_bearer" in operation["security"][0]:
                token = "the metrics token, when set"
            answers = ", ".join(f"`{status}`" for status in operation["responses"])
            lines.append(f"| `{method.upper()} {route}` | {operation['summary']} | {token} | {answers} |")
    schemas = doc["components"]["schemas"]
    lines += ["", "The request and response bodies:", ""]
    for name, schema in schemas.items():
        fields = schema.get("properties", {})
        required = set(schema.get("required", []))
        lines += [f"**`{name}`**" + (f": {_cell(schema['description'])}" if schema.get("description") else ""), ""]
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, prop in fields.items():
            lines.append(
                f"| `{field}` | {_type(prop, {})} | {'yes' if field in required else 'no'} "
                f"| {_cell(prop.get('description', ''))} |"
            )
        lines.append("")
    body = json.dumps(doc, indent=2, ensure_ascii=False)
    lines += ['??? note "The whole document (`GET /openapi.json`)"', "", "    ```json"]
    lines += [f"    {line}" for line in body.splitlines()]
    lines += ["    ```", ""]
    return "\n".join(lines)


GENERATORS = {"spec-reference": spec_reference, "openapi": openapi_reference}
