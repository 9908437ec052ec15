"""One review from start to verdict: the base and head specs (folders, or the base from a git revision), their
changes, and a candidate for each model whose training or gates change, judged against production read-only.

Nothing model-relevant changed: the review ends there, without reading production (fast, exit 0).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from ml_platform.core.recipe import ReadSource, working_tree
from ml_platform.review.changes import Changes, compare
from ml_platform.review.report import Review
from ml_platform.spec import SpecError, load_specs


class GitError(SpecError):
    """The base revision or its specs cannot be read from git."""


def specs_at_revision(ref: str, folder: Path, into: Path) -> Path:
    """Copy the specs `folder` holds at git revision `ref` into `into` (a folder of its own); the folder must be
    inside a git checkout."""
    root = Path(_git(folder, "rev-parse", "--show-toplevel").strip()).resolve()
    relative = folder.resolve().relative_to(root).as_posix()
    listed = _git(root, "ls-tree", "--name-only", f"{ref}:{relative}" if relative != "." else ref)
    into.mkdir(parents=True, exist_ok=True)
    for name in listed.splitlines():
        if name.endswith((".yaml", ".yml")):
            prefix = f"{relative}/" if relative != "." else ""
            (into / name).write_text(_git(root, "show", f"{ref}:{prefix}{name}"))
    return into


def at_revision(ref: str, folder: Path) -> ReadSource:
    """A `ReadSource` that reads this checkout's files as git revision `ref` has them; a file outside the
    repository (an installed package) is the same on both sides, so it is read where it is."""
    root = Path(_git(folder, "rev-parse", "--show-toplevel").strip()).resolve()

    def read(path: Path) -> str | None:
        try:
            relative = path.resolve().relative_to(root).as_posix()
        except ValueError:
            return working_tree(path)
        try:
            return _git(root, "show", f"{ref}:{relative}")
        except GitError:
            return None

    return read


def run_review(
    base: Path,
    head: Path,
    *,
    read_base: ReadSource = working_tree,
    base_label: str | None = None,
    candidates: bool = True,
    stored_days: Callable[[str], int | None] | None = None,
    scratch: Path | None = None,
) -> Review:
    """Compare, then train and gate a candidate for each model that needs one. Spec errors raise `SpecError`
    (head first: the change under review), before production is read."""
    head_specs = load_specs(head)
    base_specs = load_specs(base)
    names = {s.name for s in head_specs} | {s.name for s in base_specs}
    days = {name: stored_days(name) for name in names} if stored_days else {}
    changes = compare(
        base_specs,
        head_specs,
        read_base=read_base,
        read_head=working_tree,
        stored_days={k: v for k, v in days.items() if v is not None},
    )
    review = Review(base_label or str(base), str(head), changes)
    if not candidates or not changes.candidates:
        return review
    return _with_candidates(review, changes, scratch)


def _with_candidates(review: Review, changes: Changes, scratch: Path | None) -> Review:
    from ml_platform import settings
    from ml_platform.core.mlflow_store import resolve_uris
    from ml_platform.review.candidate import ProductionUnreachable, review_candidate

    tracking_uri, registry_uri = resolve_uris()
    storage = settings.storage_url()
    with tempfile.TemporaryDirectory(prefix="ml_platform_review_", dir=scratch) as folder:
        for change in changes.candidates:
            assert change.head is not None  # a model that needs a candidate exists in the head
            try:
                review.candidates[change.name] = review_candidate(
                    change.head,
                    tracking_uri=tracking_uri,
                    registry_uri=registry_uri,
                    storage_url=storage,
                    scratch=Path(folder) / change.name,
                )
            except ProductionUnreachable as error:
                return Review(review.base, review.head, changes, review.candidates, review.problems, str(error))
            except (ValueError, FileNotFoundError) as error:  # no stored data for it, a window too short, …
                review.problems[change.name] = str(error)
    return review


def stored_features_days(storage_url: str) -> Callable[[str], int | None]:
    """Model → how many `features` partitions production storage holds (a local folder; None where unknown:
    object stores are not listed, to keep a review that changes nothing fast)."""
    local = storage_url.removeprefix("file://")
    root = None if "://" in local else Path(local)

    def count(name: str) -> int | None:
        folder = root / name / "features" if root else None
        if folder is None or not folder.is_dir():
            return None
        return sum(1 for path in folder.iterdir() if path.name.endswith(".parquet"))

    return count


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} (in {folder}): {done.stderr.strip() or 'failed'}")
    return done.stdout
