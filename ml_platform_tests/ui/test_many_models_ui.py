"""The Dagster UI with a hundred models in one code location, in headless Chromium: the asset catalog finds any
model's group, the global lineage page draws every group, and one model's lineage page shows its stages.

`dagster dev` serves 100 copies of the bundled spec (nothing materialized: this is about the size of the graph,
not its data). How long each page took is recorded as the test's properties (`--junitxml` keeps them) and
printed; the pages' own timeouts bound them.
"""

from __future__ import annotations

import re
import time

import pytest
import yaml
from playwright.sync_api import expect

from ml_platform_tests.ui.conftest import REPO, DagsterDev, served
from ml_platform_tests.ui.test_dagster_ui import STAGES, _settled_boxes

pytestmark = pytest.mark.ui

MODELS = 100


@pytest.fixture(scope="module")
def dagster_dev(chromium, tmp_path_factory) -> DagsterDev:
    """`dagster dev` over 100 specs (this module's own world; `page` opens its pages here)."""
    root = tmp_path_factory.mktemp("many_models")
    bundled = yaml.safe_load((REPO / "ml_platform" / "bundled_specs" / "flight_delay.yaml").read_text())
    specs = root / "specs"
    specs.mkdir()
    for i in range(MODELS):
        spec = {**bundled, "name": f"m{i:03d}", "serving": {**bundled["serving"], "port": 22000 + i}}
        (specs / f"m{i:03d}.yaml").write_text(yaml.safe_dump(spec))
    with served(specs, root / "home", root / "dagster_dev.log", {}) as server:
        yield server


def _timed(record_property, name: str, started: float) -> float:
    seconds = round(time.monotonic() - started, 2)
    record_property(name, seconds)
    print(f"{name}: {seconds} s")
    return seconds


def test_the_catalog_finds_any_models_group(page, record_property):
    started = time.monotonic()
    page.goto("/assets?view=folder")
    expect(page.get_by_text("m000", exact=True).first).to_be_visible()
    _timed(record_property, "catalog_s", started)
    started = time.monotonic()
    page.goto("/locations/ml_platform/asset-groups/m099")
    expect(page.get_by_text("m099/endpoint").or_(page.get_by_text("endpoint", exact=True)).first).to_be_visible()
    _timed(record_property, "group_page_s", started)


def test_the_global_lineage_draws_every_models_group(page, record_property):
    started = time.monotonic()
    page.goto("/asset-groups")
    # the sidebar lists the groups (a virtual list: the first ones are drawn), the graph draws them
    expect(page.get_by_role("button", name="asset_group m000 m000")).to_be_visible()
    _timed(record_property, "global_lineage_s", started)
    # any other model is one search away: "Jump to…" finds its group's asset and centres the graph on it
    started = time.monotonic()
    jump = page.get_by_role("combobox", name="Jump to…")
    jump.fill("m099/endpoint")
    page.get_by_text(re.compile(r"^\s*endpoint\s*m099\s*$")).last.click()  # the suggestion: "endpoint  m099"
    expect(page.locator("foreignObject").filter(has_text="m099").first).to_be_visible()
    _timed(record_property, "jump_to_model_s", started)


def test_one_models_lineage_shows_its_stages(page, record_property):
    started = time.monotonic()
    page.goto("/locations/ml_platform/asset-groups/m042/lineage")
    boxes = _settled_boxes(page, sorted(STAGES))
    _timed(record_property, "model_lineage_s", started)
    assert all(box and box["width"] > 0 for box in boxes.values()), boxes
