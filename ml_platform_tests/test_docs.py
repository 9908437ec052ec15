"""The documentation (docs/, built by `make docs`) says what the code does: every spec block in its pages is a
valid spec (whole, or a part of the bundled one), every command names a subcommand, flags, Make target or
script that exists, the generated pages cover every field and route, and the README stays short.

A block whose spec part cannot stand on the bundled spec says how it is checked on the line above it:
`<!-- docs-check: base=PATH -->` (merged onto that spec instead) or `<!-- docs-check: schema (why) -->` (checked
against the spec's JSON Schema only, e.g. a spec of columns no bundled source has)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml
from jsonschema import Draft202012Validator

from ml_platform import cli
from ml_platform.spec import BUNDLED_SPECS, load_spec
from ml_platform.spec.json_schema import spec_schema
from ml_platform.spec.loading import parse_yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!-- docs-check: (?P<check>[^>]*?) -->")
MODELINE = "# yaml-language-server: $schema="


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    check: str  # the docs-check marker's text on the line above, or ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for page in [*sorted(DOCS.glob("*.md")), REPO / "README.md"]:
        text = page.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
            marker = MARKER.fullmatch(before.strip())
            found.append(
                Block(
                    page.name,
                    text.count("\n", 0, match.start()) + 1,
                    match["lang"],
                    textwrap.dedent(match["body"]),
                    marker["check"] if marker else "",
                )
            )
    return found


BLOCKS = _blocks()
SPEC_BLOCKS = [b for b in BLOCKS if b.lang == "yaml"]
COMMAND_BLOCKS = [b for b in BLOCKS if b.lang in ("console", "bash")]


def _bundled() -> dict:
    return parse_yaml((BUNDLED_SPECS / "flight_delay.yaml").read_text())


def _merged(base: dict, part: dict) -> dict:
    """`part` over `base`: sections merge field by field; a source or a target is one choice and replaces."""
    merged = dict(base)
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in ("source", "target"):
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged


def test_the_pages_have_spec_and_command_blocks():
    assert len(SPEC_BLOCKS) >= 8 and len(COMMAND_BLOCKS) >= 15, "the block parser stopped finding the docs' blocks"


@pytest.mark.parametrize("block", SPEC_BLOCKS, ids=str)
def test_every_spec_block_is_valid(block, tmp_path):
    part = parse_yaml(block.body)
    if part is None:  # only comments: the editor line
        lines = [line for line in block.body.splitlines() if line.strip()]
        assert lines and all(line.startswith(MODELINE) for line in lines), f"{block}: an empty spec block"
        for line in lines:
            assert (BUNDLED_SPECS / line.removeprefix(MODELINE)).is_file(), f"{block}: {line} names no file"
        return
    assert isinstance(part, dict), f"{block}: a spec block must be a mapping of fields"
    if block.check.startswith("schema"):
        spec = json.loads(json.dumps(_merged(_bundled(), part), default=str))
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(spec_schema()).iter_errors(spec)
        ]
        assert errors == [], f"{block}"
        return
    if "name" in part and "task" in part:  # a whole spec
        base: dict = {}
    elif block.check.startswith("base="):
        base = parse_yaml((REPO / block.check.removeprefix("base=")).read_text())
    else:
        base = _bundled()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_merged(base, part), sort_keys=False))
    load_spec(path)  # raises SpecError naming the field


class _Parsed(Exception):
    pass


def _parse_only(parser: argparse.ArgumentParser, args=None, namespace=None):
    raise _Parsed(_REAL_PARSE_ARGS(parser, args, namespace))


_REAL_PARSE_ARGS = argparse.ArgumentParser.parse_args


def _commands(block: Block) -> list[str]:
    """The commands of a block: `$ ` lines of a console block (continued while a quote is open), every line of
    a bash block (continued after a backslash); comments dropped."""
    commands: list[str] = []
    lines = block.body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if block.lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
            while line.count("'") % 2 and i < len(lines):
                line += " " + lines[i].strip()
                i += 1
        else:
            while line.endswith("\\") and i < len(lines):
                line = line[:-1] + " " + lines[i].strip()
                i += 1
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))


# Commands the pages show that these tests do not check (by how the command starts), and why.
NOT_CHECKED = {
    "ls": "lists a folder",
    "git": "git itself",
    "pre-commit": "the pre-commit tool installs hooks from .pre-commit-config.yaml",
    "echo": "writes a setting into deploy/.env",
    "mkdir": "makes a folder",
    "for": "the backup loop (needs the running stack)",
    "done": "the backup loop",
    "$dc": "docker-compose against the running stack",
    "dc=": "names the stack's compose command",
    "port=": "reads the stack's port",
}


def _check_command(words: list[str]) -> str | None:
    """What is wrong with one command, or None."""
    program = words[0].removeprefix(".venv/bin/")
    if program == "ml-platform":
        try:
            with mock.patch.object(argparse.ArgumentParser, "parse_args", _parse_only):
                cli.main(words[1:])
        except _Parsed:
            return None
        except SystemExit as exit:
            return f"ml-platform refuses {words[1:]} (exit {exit.code})"
        return "ml-platform did not parse its arguments"
    if program == "make":
        missing = [w for w in words[1:] if "=" not in w and w not in _make_targets()]
        return f"no Make target {missing}" if missing else None
    if program in ("python", "python3"):
        return None if (REPO / words[1]).is_file() else f"no script {words[1]}"
    if program == "mkdocs":
        return None if words[1] in ("build", "serve") and (REPO / "mkdocs.yml").is_file() else "mkdocs?"
    if program == "docker":
        if words[1] == "build":
            return None if (REPO / words[-1]).is_dir() else f"no build context {words[-1]}"
        return None if words[1] in ("run",) else f"docker {words[1]}?"
    if program == "curl":
        body = words[words.index("-d") + 1] if "-d" in words else None
        if body is None:
            return None
        spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
        sent = {name for row in json.loads(body)["instances"] for name in row}
        return None if sent == set(spec.features.names) else f"the request's fields {sent ^ set(spec.features.names)}"
    if words[0] in NOT_CHECKED or words[0].startswith(("dc=", "port=")):
        return None
    return f"a command these tests do not know: {words[0]} (check it, or list it in NOT_CHECKED with why)"


@pytest.mark.parametrize("block", COMMAND_BLOCKS, ids=str)
def test_every_command_names_what_exists(block):
    commands = _commands(block)
    assert commands, f"{block}: a command block without a command"
    problems = [f"{command}: {p}" for command in commands if (p := _check_command(shlex.split(command)))]
    assert problems == [], f"{block}"


def _generator():
    loaded = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert loaded and loaded.loader
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_the_field_reference_lists_every_field_of_every_section():
    generator = _generator()
    reference = generator.on_page_markdown("<!-- generated: spec-reference -->")
    schema = spec_schema()
    for name, definition in {"ModelSpec": schema, **schema["$defs"]}.items():
        for field, prop in definition["properties"].items():
            row = f"| `{field}` |"
            assert row in reference, f"{name}.{field} is missing from the field reference"
            assert generator._cell(prop["description"]) in reference
    assert "<!-- generated" not in reference
    assert "generated: spec-reference" in (DOCS / "writing-a-spec.md").read_text()


def test_the_openapi_page_is_the_served_document():
    generator = _generator()
    doc = generator.openapi_document()
    page = generator.on_page_markdown("<!-- generated: openapi -->")
    for route, methods in doc["paths"].items():
        for method in methods:
            assert f"`{method.upper()} {route}`" in page
    instance = doc["components"]["schemas"]["Instance"]["properties"]
    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    assert set(spec.features.names) <= set(instance)
    assert json.dumps(doc, indent=2).splitlines()[1].strip() in page
    assert "generated: openapi" in (DOCS / "serving.md").read_text()


def test_the_readme_is_short_and_points_at_the_docs():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).is_file(), f"the README links to {link}, which does not exist"
    assert "make docs" in readme
