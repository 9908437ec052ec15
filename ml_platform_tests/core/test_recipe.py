"""What a version records besides its data (`core.recipe`): the resolved spec, which loads back as the same spec;
the git state of the source it was built from, or why there is none; each derived-feature function's source
digest. Real git repositories and real modules on disk."""

from __future__ import annotations

import pytest

from ml_platform.core import recipe
from ml_platform.spec import load_spec
from ml_platform_tests.git_repos import git

CANARY = {"serving.rollout": {"mode": "canary", "fraction": 0.2, "key": "carrier"}}
DAILY_FILES = {
    "source": {"kind": "files", "path": "/data/flights/{date}.csv"},
    "partitions.start": "2024-01-01",
    "monitoring.model_freshness": None,
    "schedule": {"minute": 7},
}


@pytest.mark.parametrize("overrides", [{}, CANARY, DAILY_FILES, {"training.engine": "dask"}])
def test_the_resolved_spec_loads_back_as_the_same_spec(tmp_path, write_spec, overrides):
    spec = load_spec(write_spec(tmp_path / "in", overrides))
    written = tmp_path / "out" / "spec.yaml"
    written.parent.mkdir()
    written.write_text(recipe.resolved_spec_yaml(spec))
    again = load_spec(written)
    assert again.model_dump() == spec.model_dump() and again.digest == spec.digest
    assert "P1D" not in written.read_text()  # durations in the spec's own units, not ISO 8601


def test_the_source_state_is_the_commit_and_whether_the_checkout_changed(tmp_path):
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    (repo / "specs" / "m.yaml").write_text("name: m\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    clean = recipe.source_state(repo / "specs")
    assert clean == recipe.SourceState(git(repo, "rev-parse", "HEAD"), False)
    assert clean.tags() == {recipe.GIT_COMMIT_TAG: clean.commit, recipe.DIRTY_TAG: "false"}
    (repo / "specs" / "m.yaml").write_text("name: m2\n")
    assert recipe.source_state(repo / "specs").dirty is True
    (repo / "specs" / "untracked.yaml").write_text("")  # an untracked file is not a change to what was committed
    git(repo, "checkout", "-q", "--", "specs/m.yaml")
    assert recipe.source_state(repo / "specs").dirty is False


def test_without_git_the_state_says_why(tmp_path):
    state = recipe.source_state(tmp_path)
    assert state.commit is None and state.dirty is None and str(tmp_path) in state.note
    assert list(state.tags()) == [recipe.SOURCE_NOTE_TAG]
    gone = recipe.source_state(tmp_path / "no_such_folder")
    assert gone.commit is None and "not a folder" in gone.note


def test_derived_functions_are_digested_from_their_source(tmp_path, write_spec, monkeypatch):
    module = tmp_path / "code" / "recipe_probe_features.py"
    module.parent.mkdir()
    module.write_text("def hour(frame, timestamp):\n    return frame[timestamp].dt.hour\n")
    monkeypatch.syspath_prepend(str(module.parent))
    derived = [
        {"name": "day_of_week", "function": "ml_platform.core.derived:day_of_week", "type": "numeric"},
        {"name": "month", "function": "ml_platform.core.derived:month", "type": "numeric"},
        {"name": "hour", "function": "recipe_probe_features:hour", "type": "numeric"},
    ]
    spec = load_spec(write_spec(tmp_path, {"features.derived": derived}))
    before = recipe.derived_digests(spec)
    assert set(before) == {"day_of_week", "month", "hour"} and all(before.values())
    module.write_text("def hour(frame, timestamp):\n    return (frame[timestamp].dt.hour + 1) % 24\n")
    after = recipe.derived_digests(spec)
    assert after["hour"] != before["hour"] and after["month"] == before["month"]
    module.write_text("def other(frame, timestamp):\n    return 1\n")
    assert recipe.derived_digests(spec)["hour"] is None
    assert recipe.derived_tags(spec)[recipe.DERIVED_TAG.format(name="hour")] == "source not found"
