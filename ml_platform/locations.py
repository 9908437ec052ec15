"""One code location per team: `ml_platform.locations` with the team's folder name as the attribute.

Each team keeps its specs in a folder of its own under the specs root (ML_PLATFORM_SPECS): `specs/fraud/*.yaml`,
`specs/pricing/*.yaml`. Each folder is a code location of its own in workspace.yaml (`ml-platform workspace`
writes it):

    load_from:
      - python_module: {module_name: ml_platform.locations, attribute: fraud, location_name: fraud}
      - python_module: {module_name: ml_platform.locations, attribute: pricing, location_name: pricing}

Dagster loads each location in a process of its own, so a broken spec fails its own team's location only: the UI
shows that location's error (the file, the field and the fix) while the others keep loading, ticking, running
and serving. Inside one location a broken spec fails the whole location, loudly: its team sees it at once, and
no model of theirs runs half-wired. Locations share ML_PLATFORM_HOME (storage, registry, endpoints), so a model
name must be unique across all of them: a clash fails the location that loads the second one, naming both files.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ml_platform.spec import SPECS_ENV, SpecError, load_specs, spec_files
from ml_platform.spec.loading import parse_yaml

if TYPE_CHECKING:
    import dagster as dg


def specs_root() -> Path:
    """The folder that holds one subfolder of specs per team (ML_PLATFORM_SPECS)."""
    root = os.environ.get(SPECS_ENV)
    if not root:
        raise SpecError(f"{SPECS_ENV} is not set: set it to the folder that holds one folder of specs per team")
    return Path(root)


def teams(root: Path) -> list[str]:
    """The subfolders of `root` that hold at least one spec, by name."""
    if not root.is_dir():
        raise SpecError(f"{root}: the specs folder does not exist (set {SPECS_ENV} to a folder of team folders)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and spec_files(p))


def team_definitions(team: str, root: Path | None = None) -> dg.Definitions:
    """The Definitions of one team's folder: every spec in it, checked against the names of the other teams."""
    root = root or specs_root()
    folder = root / team
    if not folder.is_dir():
        raise SpecError(
            f"{folder}: no such team folder; the teams under {root} are {teams(root) if root.is_dir() else []} "
            f"(workspace.yaml's attribute names the folder)"
        )
    specs = load_specs(folder)
    elsewhere = _names_elsewhere(root, team)  # once: every other team's files are read once per load, not per spec
    clashes = [
        f"{spec.path}: name: found {spec.name!r}, already used by {other} (location {other.parent.name}); "
        "allowed: a name no spec of any location uses (locations share storage, the registry and the endpoints)"
        for spec in specs
        for other in elsewhere.get(spec.name, [])
    ]
    if clashes:
        raise SpecError("\n".join(clashes))
    from ml_platform.defs import build_definitions

    return build_definitions(specs)


def _names_elsewhere(root: Path, team: str) -> dict[str, list[Path]]:
    """Model name → spec files of the other teams that declare it (their `name:` only; a file that does not parse
    is that team's problem, reported by its own location)."""
    import yaml

    names: dict[str, list[Path]] = {}
    for other in teams(root):
        if other == team:
            continue
        for path in spec_files(root / other):
            try:
                data = parse_yaml(path.read_text())
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                names.setdefault(data["name"], []).append(path)
    return names


def workspace_yaml(root: Path) -> str:
    """workspace.yaml with one code location per team folder under `root`."""
    found = teams(root)
    if not found:
        raise SpecError(f"{root}: no team folder with specs (expected {root}/<team>/<model>.yaml)")
    lines = [
        f"# One code location per team folder under {root} (ml-platform workspace); run with",
        f"# ML_PLATFORM_SPECS={root}. A broken spec fails its own team's location only.",
        "load_from:",
    ]
    for team in found:
        lines += [
            "  - python_module:",
            "      module_name: ml_platform.locations",
            f"      attribute: {team}",
            f"      location_name: {team}",
        ]
    return "\n".join(lines) + "\n"


@functools.cache
def _cached(team: str, root: str) -> dg.Definitions:
    return team_definitions(team, Path(root))


def __getattr__(name: str) -> dg.Definitions:
    """`ml_platform.locations.<team>`: what workspace.yaml's `attribute` asks Dagster to load."""
    if name.startswith("_"):  # Python's and tools' own probes (`__path__`, `_pytest`...) are not teams
        raise AttributeError(name)
    return _cached(name, str(specs_root()))
