"""PDF tables are read as tables: a row to a line, each figure under its column's header."""

from __future__ import annotations

import random
from pathlib import Path

from fpdf import FPDF

import knowledge.loaders.pdf_tables as pdf_tables

from knowledge.access import Scope
from knowledge.chunking import chunk_document
from knowledge.loaders import load_file
from knowledge.loaders.pdf_tables import _Line, tables_as_markdown
from knowledge.types import Document


def make_pdf(path: Path, *, rows: list[list[str]], widths: list[float], bullets: list[str] = ()) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 6, "Medical plans. We offer two plans through Summit Health.", new_x="LMARGIN", new_y="NEXT")
    with pdf.table(col_widths=widths, width=sum(widths), text_align="LEFT", first_row_as_headings=True) as table:
        for row in rows:
            cells = table.row()
            for value in row:
                cells.cell(value)
    pdf.ln(4)
    for item in bullets:  # the marker is a piece of its own, as in the handbook's PDFs
        pdf.set_x(pdf.l_margin + 3)
        pdf.cell(5, 6, "-")
        pdf.multi_cell(120, 6, item, new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "Questions go to the People team.", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


PLANS = [
    ["", "Summit PPO 500", "Summit HSA 2000"],
    ["Annual deductible (individual / family)", "500 / 1,000 USD", "2,000 / 4,000 USD"],
    ["Primary care visit", "25 USD copay", "20% after deductible"],
    ["Company HSA contribution per year", "Not available", "1,000 USD individual, 2,000 USD family, paid monthly"],
]


def test_a_pdf_table_becomes_a_markdown_table_with_its_cells_apart(tmp_path: Path) -> None:
    text = load_file(make_pdf(tmp_path / "benefits.pdf", rows=PLANS, widths=[70, 40, 40])).text
    assert "|  | Summit PPO 500 | Summit HSA 2000 |\n|---|---|---|\n" in text
    assert "| Annual deductible (individual / family) | 500 / 1,000 USD | 2,000 / 4,000 USD |" in text
    # A cell wrapped onto a second line is one cell again.
    assert "| Not available | 1,000 USD individual, 2,000 USD family, paid monthly |" in text
    # Prose around the table reads as before, apart from it.
    assert text.startswith("Medical plans. We offer two plans through Summit Health.\n\n| ")
    assert text.endswith("\n\nQuestions go to the People team.")


def test_a_pdf_tables_rows_are_chunked_as_a_table(tmp_path: Path) -> None:
    text = load_file(make_pdf(tmp_path / "benefits.pdf", rows=PLANS, widths=[70, 40, 40])).text
    chunks = chunk_document(Document(doc_id="d", title="Benefits", source="b.pdf", path="b.pdf", text=text,
                                     scope=Scope.public(), content_hash="h"))
    assert any("| Annual deductible (individual / family) | 500 / 1,000 USD |" in c.text for c in chunks)


def test_a_bullet_list_with_markers_apart_is_not_a_table(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "list.pdf", rows=[["Day", "Task"], ["BD+1", "Reconcile banks"], ["BD+2", "Accruals"]],
                    widths=[30, 60], bullets=["Send the accrual request.", "Confirm the deploy freeze.",
                                              "Run the final payroll reports."])
    text = load_file(path).text
    assert "| Day | Task |" in text
    assert "\n- Send the accrual request.\n" in text
    assert "| - |" not in text and "| Send the accrual request. |" not in text


def test_lines_that_do_not_line_up_stay_text() -> None:
    # Word-by-word pieces at positions that do not repeat from line to line: prose, not columns.
    lines = [_Line("The quick brown", [(50.0, "The"), (71.0, "quick"), (103.0, "brown")]),
             _Line("fox jumps over", [(50.0, "fox"), (66.5, "jumps"), (99.0, "over")])]
    assert tables_as_markdown(lines) == "The quick brown\nfox jumps over"


def test_one_aligned_row_is_not_a_table() -> None:
    lines = [_Line("Intro", [(50.0, "Intro")]), _Line("Name Value", [(50.0, "Name"), (200.0, "Value")]),
             _Line("Outro", [(50.0, "Outro")])]
    assert tables_as_markdown(lines) == "Intro\nName Value\nOutro"


def test_a_cell_holding_a_pipe_does_not_split_the_row() -> None:
    lines = [_Line("Plan Limit", [(50.0, "Plan"), (200.0, "Limit")]),
             _Line("A|B 10", [(50.0, "A|B"), (200.0, "10")]),
             _Line("C 20", [(50.0, "C"), (200.0, "20")])]
    assert tables_as_markdown(lines).strip().split("\n") == [
        "| Plan | Limit |", "|---|---|", "| A/B | 10 |", "| C | 20 |"]


def test_a_page_of_scattered_pieces_stays_text_at_a_cost_that_grows_with_its_lines(monkeypatch) -> None:
    # Pieces at positions that never line up (a producer placing every word, or a hostile file):
    # each line is tried as a table's start, but a block stops as soon as it has more columns than a
    # table could, so the lines are tried a bounded number of times each (was: cubic, minutes a page).
    pick = random.Random(7)
    lines = []
    for i in range(300):
        xs = sorted(pick.uniform(0, 500) for _ in range(3))
        lines.append(_Line(f"w{i}a w{i}b w{i}c", [(x, f"w{i}{c}") for x, c in zip(xs, "abc")]))
    tried = []
    monkeypatch.setattr(pdf_tables, "_cells", lambda block, real=pdf_tables._cells: tried.append(len(block)) or real(block))
    assert tables_as_markdown(lines) == "\n".join(line.text for line in lines)
    assert len(tried) <= 3 * len(lines) and max(tried) <= 6


def test_a_failure_while_finding_tables_keeps_the_pages_text(monkeypatch) -> None:
    def extract(visitor_text):
        visitor_text("Plan Limit\nA 10", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 50.0, 700.0], {}, 11)
        return "Plan Limit\nA 10"

    def broken(pieces):
        raise ValueError("a bug in the table heuristic")

    monkeypatch.setattr(pdf_tables, "_lines", broken)
    assert pdf_tables.page_text_with_tables(extract) == "Plan Limit\nA 10"


def test_pieces_that_do_not_add_up_to_the_text_leave_it_as_extracted() -> None:
    def extract(visitor_text):
        visitor_text("Plan", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 50.0, 700.0], {}, 11)
        visitor_text("Limit", [1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 200.0, 700.0], {}, 11)
        return "Plan Limit\nA 10\nB 20"  # the text holds what no piece gave

    assert pdf_tables.page_text_with_tables(extract) == "Plan Limit\nA 10\nB 20"


def test_a_list_whose_first_line_starts_with_its_marker_is_not_tried_as_a_table() -> None:
    lines = [_Line(f"- item {i}", [(50.0, "-"), (60.0, f"item {i}")]) for i in range(4)]
    assert tables_as_markdown(lines) == "\n".join(line.text for line in lines)


def test_a_note_under_a_table_starting_at_a_column_is_not_its_last_rows_text() -> None:
    rows = [_Line("Plan Limit", [(50.0, "Plan"), (200.0, "Limit")], y=700.0),
            _Line("A 10", [(50.0, "A"), (200.0, "10")], y=686.0),
            _Line("B 20", [(50.0, "B"), (200.0, "20")], y=672.0)]
    note = _Line("Footnote: limits are per year.", [(200.0, "Footnote: limits are per year.")], y=650.0)
    wrapped = _Line("a year", [(200.0, "a year")], y=666.0)  # closer than the next row would be
    assert tables_as_markdown([*rows, note]).strip().split("\n") == [
        "| Plan | Limit |", "|---|---|", "| A | 10 |", "| B | 20 |", "", "Footnote: limits are per year."]
    assert "| B | 20 a year |" in tables_as_markdown([*rows, wrapped])
