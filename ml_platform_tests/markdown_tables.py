"""What a CommonMark + GFM-tables renderer (markdown-it, as the Dagster UI's) makes of Markdown tables: the
model card's unit tests and the UI tests compare against it."""

from __future__ import annotations

from markdown_it import MarkdownIt


def markdown_tables(markdown: str) -> list[list[list[str]]]:
    """Every table the renderer finds: rows of rendered cell texts."""
    tables, row = [], None
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
            tables[-1].append(row)
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children))
        elif token.type == "tr_close":
            row = None
    return tables
