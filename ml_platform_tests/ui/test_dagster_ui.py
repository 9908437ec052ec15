"""The Dagster UI as a user sees it, in headless Chromium: the lineage page, an evaluation's model card (a
multiclass model's too, with its confusion matrix), the promotion gates in the checks tab, and a drift
partition's table and plot.

The world (a small materialized graph served by the real `dagster dev`) is set up once per session in
conftest.py; on a failure the page's screenshot and the `dagster dev` log tail are saved in
`test-artifacts/ui/` at the repo root.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from ml_platform_tests.markdown_tables import markdown_tables

pytestmark = pytest.mark.ui

STAGES = {
    "raw",
    "features",
    "training_set",
    "model",
    "evaluation",
    "champion",
    "endpoint",
    "predictions",
    "drift",
    "performance",
}
GATES = {"metric_floor", "not_worse_than_champion", "fairness_gap", "prediction_sanity"}


def _markdown_tables(markdown: str) -> list[list[list[str]]]:
    """The tables a CommonMark + GFM-tables renderer makes of the Markdown, cell texts stripped as the page
    shows them."""
    return [[[cell.strip() for cell in row] for row in table] for table in markdown_tables(markdown)]


def _html_tables(container) -> list[list[list[str]]]:
    """The <table> elements in the container as rendered: rows of cell texts."""
    return container.locator("table").evaluate_all(
        "tables => tables.map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim())))"
    )


def _decoded_images(container) -> list[dict]:
    """Every <img> in the container, decoded by the browser: alt text and natural size (0 × 0 if it fails)."""
    return container.locator("img").evaluate_all(
        """images => Promise.all(images.map(i => i.decode().then(
               () => ({alt: i.alt, width: i.naturalWidth, height: i.naturalHeight}),
               () => ({alt: i.alt, width: 0, height: 0}))))"""
    )


def _show_markdown(page, entry: str):
    """Open a Markdown metadata entry (`[Show Markdown]` in its row) and return the dialog it renders in."""
    row = page.locator("tr").filter(has=page.get_by_text(entry, exact=True))
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog").filter(has=page.get_by_text(entry, exact=True))
    dialog.wait_for()
    return dialog


def _settled_boxes(page, stages: list[str], within_s: float = 20) -> dict[str, dict]:
    """Each stage's node box on the lineage page, once the graph has stopped moving (it zooms to fit)."""
    nodes = {stage: page.locator("foreignObject").filter(has=page.get_by_text(stage, exact=True)) for stage in stages}
    for stage, node in nodes.items():
        expect(node, f"the {stage} node").to_have_count(1)
        expect(node, f"the {stage} node").to_be_visible()
    boxes, deadline = None, time.monotonic() + within_s
    while time.monotonic() < deadline:
        current = {stage: node.bounding_box() for stage, node in nodes.items()}
        if current == boxes:
            return current
        boxes = current
        page.wait_for_timeout(500)
    return boxes


def test_the_lineage_page_shows_every_stage_of_the_model(page, dagster_dev):
    """The group's lineage: one node per stage on screen, every dependency drawn left to right; `validated` is
    the raw data's blocking schema check, shown on raw with its result."""
    facts = dagster_dev.facts
    assert set(facts["stages"]) == STAGES, "the bundled model's stages changed: update this test and the docs"
    assert ["raw", "schema", True] in facts["checks"]
    page.goto(f"/locations/ml_platform/asset-groups/{facts['model']}/lineage")
    boxes = _settled_boxes(page, sorted(STAGES))
    viewport = page.viewport_size
    for stage, box in boxes.items():
        assert box["width"] > 0 and box["height"] > 0, stage
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], f"{stage} off screen: {box}"
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], f"{stage} off screen: {box}"
    for upstream, downstream in facts["edges"]:
        assert boxes[upstream]["x"] + boxes[upstream]["width"] <= boxes[downstream]["x"], (upstream, downstream)

    page.goto(f"/assets/{facts['model']}/raw?view=checks&checkDetail=schema")
    expect(page.get_by_text("This is a blocking asset check")).to_be_visible()
    expect(page.get_by_text("Evaluation result", exact=True)).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()


def test_the_model_card_renders_every_table_and_plot(page, dagster_dev):
    """The evaluation's model card: its sections, each Markdown table as an HTML table with the same cells
    (the TreeSHAP one and the confusion matrix included), no raw pipe rows left as text, and the plots decoded
    as images."""
    facts = dagster_dev.facts
    page.goto(f"/assets/{facts['model']}/evaluation?view=partitions&partition={facts['week']}")
    card = _show_markdown(page, "model_card")
    card.get_by_role("heading", name=f"Model card: {facts['model']} v{facts['version']}").wait_for()
    assert card.locator("h2").all_inner_texts() == [
        "Data",
        "Metrics on the held-out slice",
        "Confusion matrix (held-out slice)",
        "Slices (roc_auc)",
        "Fairness",
        "What drives predictions (TreeSHAP)",
        "Gates",
        "Trace",
        "Limits",
        "Plots",
    ]

    card.locator("table").first.wait_for()
    raw_pipes = [text for text in card.locator("p, li").all_inner_texts() if text.lstrip().startswith("|")]
    assert raw_pipes == [], f"Markdown tables left as text: {raw_pipes}"
    rendered = _html_tables(card)
    assert len(rendered) == 5, [table[0] for table in rendered]
    assert rendered == _markdown_tables(facts["model_card"])
    for section, header in [
        ("Metrics on the held-out slice", ["metric", "model", "baseline", "champion"]),
        ("Confusion matrix (held-out slice)", ["actual", "0", "1"]),
        ("What drives predictions (TreeSHAP)", ["feature", "mean abs SHAP"]),
        ("Gates", ["gate", "passed", "detail"]),
    ]:
        table = card.locator("h2", has_text=section).locator("xpath=following-sibling::*[1]")
        assert table.evaluate("n => n.tagName") == "TABLE", f"{section}: {table.inner_text()[:300]}"
        assert table.locator("th").all_inner_texts() == header
    assert [[row[0], row[2]] for row in rendered[4][1:]] == [[g["name"], g["detail"]] for g in facts["gates"]]

    images = _decoded_images(card)
    assert {image["alt"] for image in images} == {"feature_attributions", "curves", "confusion_matrix"}
    assert all(image["width"] > 100 and image["height"] > 100 for image in images), images


def test_a_multiclass_model_card_shows_its_confusion_matrix(page, dagster_dev):
    """A model on text labels (the departure airport): its card names the classes, and shows the confusion
    matrix headed by the airports as a table and as a decoded image."""
    multiclass = dagster_dev.facts["multiclass"]
    assert _markdown_tables(multiclass["confusion_matrix"])[0][0] == ["actual", "EWR", "JFK", "LGA"]
    page.goto(f"/assets/{multiclass['model']}/evaluation?view=partitions&partition={multiclass['week']}")
    card = _show_markdown(page, "model_card")
    card.get_by_role("heading", name=f"Model card: {multiclass['model']} v{multiclass['version']}").wait_for()
    expect(card.locator("p", has_text="Classes.")).to_contain_text("Classes. EWR, JFK, LGA ·")
    heading = card.locator("h2", has_text="Confusion matrix (held-out slice)")
    expect(heading).to_be_visible()
    table = heading.locator("xpath=following-sibling::*[1]")
    assert table.evaluate("n => n.tagName") == "TABLE", table.inner_text()[:300]
    assert table.locator("th").all_inner_texts() == ["actual", "EWR", "JFK", "LGA"]
    rows = _html_tables(table.locator("xpath=.."))
    confusion = next(t for t in rows if t[0] == ["actual", "EWR", "JFK", "LGA"])
    assert [row[0] for row in confusion[1:]] == ["EWR", "JFK", "LGA"]
    assert sum(int(cell.replace(",", "")) for row in confusion[1:] for cell in row[1:]) > 0
    assert confusion in _markdown_tables(multiclass["model_card"])
    images = {image["alt"]: image for image in _decoded_images(card)}
    assert images["confusion_matrix"]["width"] > 100 and images["confusion_matrix"]["height"] > 100, images


def test_the_checks_tab_shows_the_four_gates_and_their_results(page, dagster_dev):
    """The evaluation's checks are the four blocking promotion gates, each with its result, the detail the gate
    computed and the training week it judged."""
    facts = dagster_dev.facts
    assert {gate["name"] for gate in facts["gates"]} == GATES
    page.goto(f"/assets/{facts['model']}/evaluation?view=checks")
    expect(page.get_by_text(f"Checks ({len(GATES)})", exact=True)).to_be_visible()
    for gate in facts["gates"]:
        item = page.locator(f'[title="{gate["name"]}"]').first.locator("xpath=..")
        expect(item).to_contain_text("Succeeded" if gate["passed"] else "Failed")

    for gate in facts["gates"]:
        page.goto(f"/assets/{facts['model']}/evaluation?view=checks&checkDetail={gate['name']}")
        expect(page.get_by_text("This is a blocking asset check")).to_be_visible()
        expect(page.get_by_text("Latest execution", exact=True)).to_be_visible()
        expect(page.get_by_text(gate["detail"], exact=True).first).to_be_visible()
        expect(page.get_by_text("Passed" if gate["passed"] else "Failed", exact=True).first).to_be_visible()
        expect(page.get_by_text(facts["week"], exact=True).first).to_be_visible()


def test_a_drift_partition_shows_its_table_and_plot(page, dagster_dev):
    """One day's drift: materialized against the champion, the per-feature table renders as a table and the
    PSI chart decodes as an image."""
    facts = dagster_dev.facts
    drift = facts["drift"]
    assert drift["chart"], "the drift day has no chart to look at"
    page.goto(f"/assets/{facts['model']}/drift?view=partitions&partition={facts['drift_day']}")
    expect(page.get_by_text(drift["live_source"], exact=True)).to_be_visible()

    table = _show_markdown(page, "features")
    table.locator("table").first.wait_for()
    assert _html_tables(table) == _markdown_tables(drift["features"])
    assert len(_markdown_tables(drift["features"])[0]) > 2
    table.get_by_role("button", name="Close").click()
    table.wait_for(state="detached")

    chart = _show_markdown(page, "chart")
    images = _decoded_images(chart)
    assert [image["alt"] for image in images] == ["drift"]
    assert images[0]["width"] > 100 and images[0]["height"] > 100, images
