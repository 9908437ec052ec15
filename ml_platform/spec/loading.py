"""Reading spec files: YAML to a validated ModelSpec, and every mistake rendered for the spec's author.

A wrong spec must fail once, early and clearly: every error names the file, the field path, what was found
and what is allowed, so the author can fix it without reading our code.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ml_platform.core.sources import SOURCE_KINDS
from ml_platform.spec import rules
from ml_platform.spec.sections import ModelSpec

BUNDLED_SPECS = Path(__file__).parent.parent / "bundled_specs"
SPECS_ENV = "ML_PLATFORM_SPECS"


class SpecError(ValueError):
    """A spec is wrong; the message says where, what was found and what is allowed."""


def parse_yaml(text: str) -> Any:
    """A YAML document, parsed by libyaml when PyYAML was built with it (about 10x faster than PyYAML's own parser;
    every run re-reads every spec of its code location). A document that does not parse is parsed again by PyYAML's
    own parser, whose error quotes the line with a caret under the mistake."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # a safe loader: plain data only
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def load_spec(path: str | Path) -> ModelSpec:
    """Parse and validate one spec file; raise SpecError naming the file, field, value and what is allowed.

    Deprecated fields still load; the returned spec lists them in `deprecations`.
    """
    path = Path(path)
    try:
        raw = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a YAML mapping of fields, found {type(raw).__name__}")
    context: dict[str, list[str]] = {"deprecations": []}
    try:
        spec = ModelSpec.model_validate({**raw, "path": path, "deprecations": ()}, context=context)
    except ValidationError as error:
        raise SpecError(_describe(path, error)) from None
    problems = rules.problems(spec)
    if problems:
        raise SpecError(format_problems(path, problems))
    if context["deprecations"]:
        spec = spec.model_copy(update={"deprecations": tuple(context["deprecations"])})
    return spec


def spec_files(folder: str | Path | None = None) -> list[Path]:
    """The spec files of a folder (default: ML_PLATFORM_SPECS, else the bundled specs)."""
    folder = Path(folder or os.environ.get(SPECS_ENV) or BUNDLED_SPECS)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise SpecError(f"{folder}: the specs folder does not exist (set {SPECS_ENV} to a folder of .yaml specs)")
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_specs(folder: str | Path | None = None) -> list[ModelSpec]:
    """Every spec of a folder; all errors of all files in one message; model names must be unique."""
    specs, errors = [], []
    for path in spec_files(folder):
        try:
            specs.append(load_spec(path))
        except SpecError as error:
            errors.append(str(error))
    seen: dict[str, Path | None] = {}
    for spec in specs:
        if spec.name in seen:
            errors.append(
                f"{spec.path}: name: found {spec.name!r}, already used by {seen[spec.name]}; "
                "allowed: a name no other spec uses"
            )
        seen[spec.name] = spec.path
    if errors:
        raise SpecError("\n".join(errors))
    return specs


def format_problems(
    path: Path, problems: list[rules.Problem], heading: str = "invalid model spec", detail: str = ""
) -> str:
    """`<file>: <heading> (N problems[; detail])`, then one `  <field>: found <value>; allowed: <fix>` line per
    problem."""
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}" + (f"; {detail}" if detail else "")
    lines = [f"{path}: {heading} ({count})"]
    lines += [f"  {field}: found {found!r}; allowed: {allowed}" for field, found, allowed in problems]
    return "\n".join(lines)


def _describe(path: Path, error: ValidationError) -> str:
    """Pydantic's errors as (field path, found, allowed), one line each."""
    return format_problems(path, [_problem(item) for item in error.errors(include_url=False)])


def _problem(item: ErrorDetails) -> rules.Problem:
    # pydantic puts the discriminator's value into the location (source.sql.query): the author wrote source.query
    loc = [
        part
        for part in item["loc"]
        if part not in SOURCE_KINDS or not isinstance(part, str) or item["loc"][0] != "source"
    ]
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    kind, ctx = item["type"], item.get("ctx", {})
    found: Any
    if kind == "missing":
        found, allowed = "nothing", "this field is required"
    elif kind == "extra_forbidden":
        known = _known_fields(item["loc"][:-1], item["loc"])
        hint = difflib.get_close_matches(str(item["loc"][-1]), known, n=1)
        found = f"unknown field {item['loc'][-1]!r}"
        allowed = (f"did you mean {hint[0]!r}? " if hint else "") + f"known fields: {', '.join(known)}"
    elif kind == "union_tag_invalid":
        found, allowed = ctx.get("tag"), f"one of {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        *others, last = SOURCE_KINDS
        found, allowed = "no 'kind'", f"a 'kind' field: {', '.join(others)} or {last}"
    else:
        found = item.get("input")
        allowed = item["msg"].removeprefix("Value error, ")
        allowed = allowed[0].lower() + allowed[1:] if allowed else allowed
    return (field or "(top level)", found, allowed)


def _known_fields(parent_loc: tuple[int | str, ...], full_loc: tuple[int | str, ...]) -> list[str]:
    """The field names allowed at a location, for 'did you mean' hints."""
    model: Any = ModelSpec
    for part in parent_loc:
        if model is None:
            break
        if part in SOURCE_KINDS and full_loc[0] == "source":
            model = SOURCE_KINDS[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is not None:  # otherwise a dict key or list index: the model stays the same
            model = _model_of(field.annotation)
    fields = getattr(model, "model_fields", {}) if model else {}
    return [name for name, info in fields.items() if not info.exclude]


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as `Features | None` or `dict[str, Column]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
