"""The model card of a real model: every section a reviewer needs, with the plots embedded as PNG data."""

from __future__ import annotations

import base64
import re

import pytest

from ml_platform.core import evaluation as ev
from ml_platform.core.gates import GATE_NAMES, GateResult, run_gates
from ml_platform.core.model_card import model_card
from ml_platform.core.trace import VersionLinks
from ml_platform_tests.core.text_classifier import text_multiclass
from ml_platform_tests.markdown_tables import markdown_tables


@pytest.fixture(scope="module")
def reviewed(spec, split, model):
    """A real model, its evaluation against itself as champion, its gates and the data summary of its run."""
    gates = spec.gates
    evaluation = ev.evaluate(
        model, split.train, split.test, gates.metric, gates.slices, gates.fairness.group, champion=model
    )
    data = {
        "window": "2013-05-01 → 2013-06-25",
        "splits": split.summary(spec.timestamp, "delayed", "binary"),
        "data_versions": {f"2013-05-{d:02d}": f"v{d}" for d in range(1, 11)},
        "fit": model.manifest["fit"],
    }
    return evaluation, run_gates(evaluation, gates), data


@pytest.fixture(scope="module")
def card(spec, reviewed) -> str:
    evaluation, gates, data = reviewed
    return model_card(spec, "3", evaluation, gates, data)


def _section(card: str, title: str) -> str:
    """The text of one `## title` section, up to the next heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, flags=re.S | re.M)
    assert match, f"no section {title!r} in the card"
    return match.group(1)


def test_the_card_names_model_owner_and_purpose(card, spec):
    assert card.startswith("# Model card: flight_delay v3\n")
    assert f"**Purpose.** {spec.description}" in card
    assert "ml-platform@example.com" in card and spec.owner in card
    assert "`delayed` = `arr_delay > 15` · **Classes.** 0 / 1 (positive) · **Spec digest.**" in card
    assert spec.digest in card


def test_the_card_describes_the_data(card):
    data = _section(card, "Data")
    assert "2013-05-01 → 2013-06-25" in data
    assert "test 6484 rows (2013-06-19 → 2013-06-25)" in data
    assert "10 partitions of `flight_delay/features`" in data


def test_the_card_says_which_rows_the_final_model_saw(card, model):
    fit = model.manifest["fit"]
    assert fit["refit"] and fit["rows"] == model.manifest["rows"]["train"] + model.manifest["rows"]["valid"]
    assert (
        f"Final model: refit on train + validation, {fit['rows']} rows ({fit['first_day']} → "
        f"{fit['last_day']}), {fit['rounds']} rounds chosen by early stopping"
    ) in _section(card, "Data")


def test_the_card_has_the_metrics_table(card, reviewed):
    evaluation = reviewed[0]
    table = _section(card, "Metrics on the held-out slice")
    header = table.strip().splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == ["metric", "model", "baseline", "champion"]
    roc = next(line for line in table.splitlines() if "roc_auc" in line)
    assert f"{evaluation.metrics['roc_auc']:.4f}" in roc and "0.5000" in roc
    for metric in evaluation.metrics:
        assert f"| {metric}" in table


def test_the_card_has_slices_and_fairness(card, reviewed):
    evaluation = reviewed[0]
    slices = _section(card, "Slices (roc_auc)")
    for level in ("EWR", "JFK", "LGA", "UA", "DL"):
        assert f"| {level}" in slices
    fairness = _section(card, "Fairness")
    gap = evaluation.fairness
    assert f"Largest roc_auc gap across `origin`: **{gap['gap']:.4f}**" in fairness
    assert f"best {gap['best']}, worst {gap['worst']}" in fairness


def test_the_card_has_attributions_gates_and_limits(card, reviewed):
    evaluation, gates, _ = reviewed
    drivers = _section(card, "What drives predictions (TreeSHAP)")
    assert evaluation.attributions.index[0] in drivers and "mean abs SHAP" in drivers
    gate_table = _section(card, "Gates")
    for gate in gates:
        assert gate.name in gate_table and gate.detail in gate_table
    assert [g.name for g in gates] == list(GATE_NAMES)
    limits = _section(card, "Limits")
    assert "never seen in training are scored as missing" in limits and "fewer than 30 rows" in limits


def test_the_card_embeds_the_plots_as_png(card, reviewed):
    embedded = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", card)
    assert (
        {name for name, _ in embedded}
        == set(reviewed[0].plots)
        == {"feature_attributions", "curves", "confusion_matrix"}
    )
    for _, data in embedded:
        assert base64.b64decode(data, validate=True).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_card_without_plots_version_or_fairness(spec, reviewed):
    evaluation, gates, _ = reviewed
    plain = model_card(spec, None, ev.Evaluation(**{**evaluation.__dict__, "fairness": None}), gates, {}, plots=False)
    assert plain.startswith("# Model card: flight_delay\n")
    assert "data:image/png;base64," not in plain and "## Plots" not in plain
    assert "No sensitive group assessed." in _section(plain, "Fairness")
    assert "## Limits" in plain


def test_the_card_links_the_versions_chain_and_how_to_trace_a_prediction(spec, reviewed):
    evaluation, gates, data = reviewed
    links = VersionLinks(
        "flight_delay",
        "3",
        run_id="r" * 32,
        experiment="flight_delay",
        dagster_run_id="d-123",
        window="2013-05-01 → 2013-06-25",
        data_versions_digest="abc",
        commit="c0ffee",
        dirty=True,
    )
    trace = _section(model_card(spec, "3", evaluation, gates, data, plots=False, links=links), "Trace")
    assert (
        f"MLflow run `{'r' * 32}` (experiment `flight_delay`) · Dagster run `d-123` · window 2013-05-01 → "
        "2013-06-25 · data versions digest `abc` · commit `c0ffee` (uncommitted changes)"
    ) in trace
    assert "`ml-platform trace <request_id>`" in trace
    assert "`ml-platform trace <request_id>`" in _section(model_card(spec, "3", evaluation, gates, data), "Trace")


def _cells(line: str) -> list[str]:
    """A pipe-table line split at its unescaped pipes, as GFM splits it (a backslash escapes the next character)."""
    cells, current, escaped = [], "", False
    for char in line.strip().removeprefix("|"):
        if char == "|" and not escaped:
            cells.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    return cells if not current.strip() else [*cells, current]


def _assert_tables_intact(card: str, expected: int) -> list[list[list[str]]]:
    """`expected` tables render, and every source row has exactly as many unescaped cells as its header."""
    tables = markdown_tables(card)
    assert len(tables) == expected, f"{len(tables)} tables rendered, {expected} expected:\n{card[:3000]}"
    blocks = re.findall(r"^(\|.*\|)\n\|[-:| ]+\|\n((?:\|.*\|\n?)*)", card, flags=re.M)
    assert len(blocks) == expected
    for (header, body), table in zip(blocks, tables, strict=True):
        widths = {len(_cells(line)) for line in [header, *body.splitlines()]}
        assert widths == {len(table[0])}, (header, body)
        assert all(len(row) == len(table[0]) for row in table)
    return tables


def test_every_table_of_the_card_renders_as_a_table(card, reviewed):
    """Metrics, confusion matrix, slices, attributions and gates: five tables, the rendered headers and values
    as computed."""
    evaluation, gates, _ = reviewed
    metrics, confusion, slices, drivers, gate_table = _assert_tables_intact(card, 5)
    assert metrics[0] == ["metric", "model", "baseline", "champion"]
    assert [row[0] for row in metrics[1:]] == list(evaluation.metrics)
    assert confusion == [
        ["actual", "0", "1"],
        *[
            [name, *map(str, row)]
            for name, row in zip(["0", "1"], evaluation.confusion.to_numpy().tolist(), strict=True)
        ],
    ]
    assert slices[0] == list(evaluation.slices.columns) and len(slices) == len(evaluation.slices) + 1
    assert drivers[0] == ["feature", "mean abs SHAP"]
    assert [row[0] for row in drivers[1:]] == list(evaluation.attributions.index[:10])
    assert gate_table[0] == ["gate", "passed", "detail"]
    assert [(row[0], row[2]) for row in gate_table[1:]] == [(g.name, g.detail) for g in gates]


def test_pipes_backslashes_and_line_breaks_in_values_cannot_break_a_table(spec, reviewed):
    """Feature names, slice levels and gate details are user data: escaped, they render as they are."""
    evaluation, gates, data = reviewed
    attributions = evaluation.attributions.rename(index={evaluation.attributions.index[0]: "dep|hour\\"})
    slices = evaluation.slices.copy()
    slices[slices.columns[1]] = slices[slices.columns[1]].astype(str)
    slices.iloc[0, 1] = "A|B \\|C"
    odd_gates = [GateResult(g.name, g.passed, f"{g.detail} | a\\b|\nnext line") for g in gates]
    odd = ev.Evaluation(**{**evaluation.__dict__, "attributions": attributions, "slices": slices})
    card = model_card(spec, "3", odd, odd_gates, data, plots=False)
    _, _, rendered_slices, drivers, gate_table = _assert_tables_intact(card, 5)
    assert drivers[1][0] == "dep|hour\\"
    assert rendered_slices[1][1] == "A|B \\|C"
    assert [row[2] for row in gate_table[1:]] == [f"{g.detail} | a\\b| next line" for g in gates]


def test_the_card_says_on_how_many_rows_shap_ran(card, reviewed):
    attrs = reviewed[0].attributions.attrs
    assert attrs["rows"] <= attrs["cap"] and attrs["rows"] <= attrs["of_rows"]
    assert f"on {attrs['rows']} of {attrs['of_rows']} holdout rows (sample cap {attrs['cap']})" in _section(
        card, "What drives predictions (TreeSHAP)"
    )


def test_a_binary_card_has_its_confusion_matrix_and_no_unseen_labels(card, reviewed):
    section = _section(card, "Confusion matrix (held-out slice)")
    assert "Rows: the actual label; columns: the predicted one" in section
    assert card.index("## Metrics on the held-out slice") < card.index("## Confusion matrix") < card.index("## Slices")
    assert "never seen in training (" not in card


@pytest.fixture(scope="module")
def multiclass_card(spec) -> tuple[ev.Evaluation, str]:
    """The card of a text-label multiclass model whose held-out rows hold a label it never saw, and none."""
    model, train, test = text_multiclass()
    evaluation = ev.evaluate(model, train, test, "macro_f1", [], None)
    multiclass = spec.model_copy(update={"task": "multiclass"})
    return evaluation, model_card(multiclass, "1", evaluation, run_gates(evaluation, spec.gates), {})


def test_a_multiclass_card_shows_its_classes_and_confusion_matrix(multiclass_card):
    evaluation, card = multiclass_card
    assert "· **Classes.** low, mid, high ·" in card
    confusion = markdown_tables(_section(card, "Confusion matrix (held-out slice)"))
    assert len(confusion) == 1 and confusion[0][0] == ["actual", "low", "mid", "high"]
    assert [row[0] for row in confusion[0][1:]] == ["low", "mid", "high"]
    assert [list(map(int, row[1:])) for row in confusion[0][1:]] == evaluation.confusion.to_numpy().tolist()
    embedded = dict(re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", card))
    assert set(embedded) == {"feature_attributions", "confusion_matrix"}


def test_a_card_says_how_many_held_out_rows_carry_an_unseen_label(multiclass_card):
    metrics = _section(multiclass_card[1], "Metrics on the held-out slice")
    assert (
        "10 held-out rows carry a label never seen in training (huge: 7, (missing): 3): left out of the metrics."
    ) in metrics
