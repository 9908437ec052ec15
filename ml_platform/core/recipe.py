"""What a model version was made from, beyond its data: the resolved spec, the source it was built from (git
commit and whether the checkout had uncommitted changes, or why that is unknown), and the digest of each
derived-feature function's source. Recorded on every version's run, so a version can be traced back to the
code and spec that made it, and a change can be compared with it exactly.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from ml_platform.spec import ModelSpec

RESOLVED_SPEC = "spec.yaml"  # the version's run artifact: the spec as it was resolved when it trained
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag, shown in its UI
DIRTY_TAG = "ml_platform.source.dirty"
SOURCE_NOTE_TAG = "ml_platform.source"  # where git cannot say: why
DERIVED_TAG = "ml_platform.derived.{name}.sha256"

# Reads a source file (as a revision, or the working tree, has it); None when the file is absent there.
ReadSource = Callable[[Path], "str | None"]


@dataclass(frozen=True)
class SourceState:
    """The git state of the folder a version was built from; `commit` None with `note` saying why."""

    commit: str | None
    dirty: bool | None
    note: str = ""

    def tags(self) -> dict[str, str]:
        if self.commit is None:
            return {SOURCE_NOTE_TAG: self.note}
        return {GIT_COMMIT_TAG: self.commit, DIRTY_TAG: str(bool(self.dirty)).lower()}


def source_state(folder: Path) -> SourceState:
    """The commit checked out at `folder` and whether its checkout has uncommitted changes (git's own answer;
    an image or a wheel without git says so instead)."""
    try:
        head = _git(folder, "rev-parse", "HEAD")
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        return SourceState(None, None, f"no git commit for {folder}: {error}")
    return SourceState(head.strip(), bool(status.strip()))


def resolved_spec_yaml(spec: ModelSpec) -> str:
    """The spec as YAML with every default filled in: loading it again gives the same spec (and digest)."""
    data = spec.model_dump(mode="python", by_alias=True, exclude={"path", "deprecations"})
    return yaml.safe_dump(_as_yaml(data), sort_keys=False)


def _as_yaml(value: Any) -> Any:
    """Plain YAML values as a spec file writes them: durations in the spec's own units ('26h', '2d')."""
    if isinstance(value, dict):
        return {str(k): _as_yaml(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_as_yaml(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def _duration(value: timedelta) -> str:
    milliseconds = round(value.total_seconds() * 1000)
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def derived_digests(spec: ModelSpec, read: ReadSource | None = None) -> dict[str, str | None]:
    """Each derived feature's function source digest (None: its source cannot be found)."""
    return {d.name: source_digest(d.function, read or working_tree) for d in spec.features.derived}


def derived_tags(spec: ModelSpec) -> dict[str, str]:
    return {DERIVED_TAG.format(name=k): v or "source not found" for k, v in derived_digests(spec).items()}


def source_digest(function: str, read: ReadSource) -> str | None:
    """SHA-256 (16 hex) of a `module:function`'s source as `read` has the module's file (found where this
    checkout has it); None if not found."""
    module, _, name = function.partition(":")
    path = module_file(module)
    text = read(path) if path else None
    if text is None:
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            segment = ast.get_source_segment(text, node) or ""
            return hashlib.sha256(segment.encode()).hexdigest()[:16]
    return None


def module_file(module: str) -> Path | None:
    """Where a module's source file is in this checkout, or None when it cannot be found here."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    return Path(found.origin)


def working_tree(path: Path) -> str | None:
    """A `ReadSource` for the checkout itself."""
    return path.read_text() if path.is_file() else None


def _git(folder: Path, *args: str) -> str:
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise ValueError((done.stderr.strip().splitlines() or ["git failed"])[-1])
    return done.stdout
