"""Loading files into lightweight Markdown, and finding the files to load."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fpdf import FPDF

from knowledge.access import Scope
from knowledge.chunking import chunk_document
from knowledge.errors import LoadError
from knowledge.loaders import SUPPORTED_SUFFIXES, Discovered, discover, load_file
from knowledge.types import Document


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def make_pdf(path: Path, paragraphs: list[str], *, title: str | None = None, password: str | None = None) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    if title:
        pdf.set_title(title)
    for paragraph in paragraphs:
        pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(6)
    if password:
        pdf.set_encryption(owner_password="owner-" + password, user_password=password)
    pdf.output(str(path))
    return path


def load_error(path: Path) -> LoadError:
    with pytest.raises(LoadError) as caught:
        load_file(path)
    assert caught.value.path == str(path)
    return caught.value


def headings(text: str) -> list[str]:
    return re.findall(r"^#{1,6} .*$", text, flags=re.MULTILINE)


def assert_tidy(text: str) -> None:
    assert "\n\n\n" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))
    assert text == text.strip("\n")


# --- Markdown ---------------------------------------------------------------------------------


def test_markdown_front_matter_gives_the_title_and_is_removed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "release-notes.md",
        '---\ntitle: "Release notes: 2024"\ntags: [a, b]\n---\n# Changes\n\nWe fixed the exporter.\n',
    )
    loaded = load_file(path)
    assert loaded.title == "Release notes: 2024"
    assert "tags:" not in loaded.text and "---" not in loaded.text
    assert loaded.text.startswith("# Changes\n\nWe fixed the exporter.")


def test_markdown_title_is_the_first_heading_and_setext_becomes_atx(tmp_path: Path) -> None:
    text = "Onboarding Guide\n================\n\nWelcome aboard.\n\nFirst week\n----------\n\nMeet the team.\n"
    loaded = load_file(write(tmp_path / "guide.markdown", text))
    assert loaded.title == "Onboarding Guide"
    assert headings(loaded.text) == ["# Onboarding Guide", "## First week"]
    assert "====" not in loaded.text and "----" not in loaded.text
    assert "Meet the team." in loaded.text


def test_markdown_without_headings_is_titled_after_its_file_name(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path / "expense_policy-v2.md", "Receipts are required.\n"))
    assert loaded.title == "Expense policy v2"


def test_markdown_code_fences_are_kept_and_their_hash_lines_are_not_headings(tmp_path: Path) -> None:
    text = "# Deploy\n\nRun this:\n\n```bash\n# not a heading\nmake deploy\n```\n\n## After\n\nCheck logs.\n"
    loaded = load_file(write(tmp_path / "deploy.md", text))
    assert "```bash\n# not a heading\nmake deploy\n```" in loaded.text
    assert loaded.title == "Deploy"
    assert headings(_outside_fences(loaded.text)) == ["# Deploy", "## After"]


def test_markdown_unclosed_fence_is_closed(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path / "open.md", "Intro.\n\n~~~\n# comment\nx = 1\n"))
    assert loaded.text.endswith("~~~\n# comment\nx = 1\n~~~")


def test_markdown_drops_comments_and_tags_but_not_code_spans(tmp_path: Path) -> None:
    text = (
        "# Notes <!-- draft -->\n\n<!--\nhidden\nblock\n-->\n\n"
        '<p align="center">Use <b>bold</b> &amp; `<div>` tags<br>freely.</p>\n'
    )
    loaded = load_file(write(tmp_path / "notes.md", text))
    assert "hidden" not in loaded.text and "draft" not in loaded.text and "<!--" not in loaded.text
    assert "Use bold & `<div>` tags freely." in loaded.text
    assert "<p" not in loaded.text and "<b>" not in loaded.text
    assert loaded.title == "Notes"
    assert_tidy(loaded.text)


def _outside_fences(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1$", "", text, flags=re.MULTILINE | re.DOTALL)


# --- Plain text -------------------------------------------------------------------------------


def test_text_is_titled_after_the_file_name_and_tidied(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path / "on-call_handbook.txt", "Page the lead.   \r\n\r\n\r\n\r\nThen wait.\r\n"))
    assert loaded.title == "On call handbook"
    assert loaded.text == "Page the lead.\n\nThen wait."


def test_text_with_a_byte_order_mark_and_text_suffix(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path / "NOTES.TEXT", "\ufeffHello, wörld.".encode("utf-8")))
    assert loaded.text == "Hello, wörld."


def test_latin1_text_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path / "legacy.txt", "Café crème, naïve façade — déjà vu.".replace("—", "-").encode("latin-1"))
    assert load_file(path).text == "Café crème, naïve façade - déjà vu."


def test_windows_1252_quotes_are_decoded(tmp_path: Path) -> None:
    path = write(tmp_path / "ansi.txt", "“Smart” quotes – and dashes.".encode("cp1252"))
    assert load_file(path).text == "“Smart” quotes – and dashes."


def test_utf16_text_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path / "unicode.txt", "Saved by Notepad.".encode("utf-16"))
    assert load_file(path).text == "Saved by Notepad."


def test_binary_file_named_txt_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert "binary" in load_error(path).reason


def test_undecodable_text_without_nul_bytes_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "noise.txt", bytes([0x81, 0x01, 0x02, 0x8D, 0x03, 0x9D, 0x04]) * 50)
    assert "not valid UTF-8" in load_error(path).reason


# --- HTML -------------------------------------------------------------------------------------

NOISY_PAGE = """<!DOCTYPE html>
<html><head><title>Travel  Policy | Acme</title><style>body { color: red }</style>
<script>var tracking = "pixel";</script></head>
<body>
<header><a href="/">Acme home</a></header>
<nav><ul><li>Sitemap link</li></ul></nav>
<main>
  <h1>Travel policy</h1>
  <p>Book flights <b>early</b> &amp; keep
     receipts.</p>
  <!-- editor note -->
  <h2>Allowances</h2>
  <ul><li>Meals: 50 &euro;</li><li>Hotel<ul><li>Up to 4 stars</li></ul></li></ul>
  <table><tr><th>City</th><th>Rate</th></tr><tr><td>Paris</td><td>180</td></tr></table>
  <pre># not a heading
print("hi")</pre>
  <p># also not a heading</p>
  <form><input value="Search"><button>Go</button></form>
</main>
<aside>Related posts</aside>
<footer>Copyright Acme</footer>
<script>console.log("late noise")</script>
</body></html>
"""


def test_html_keeps_the_content_and_drops_the_chrome(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path / "travel.html", NOISY_PAGE))
    assert loaded.title == "Travel Policy | Acme"
    text = loaded.text
    for noise in ("tracking", "color: red", "Acme home", "Sitemap", "editor note", "Search", "Go",
                  "Related posts", "Copyright", "late noise", "<"):
        assert noise not in text.replace('print("hi")', ""), noise
    assert headings(_outside_fences(text)) == ["# Travel policy", "## Allowances"]
    assert "Book flights early & keep receipts." in text
    assert "- Meals: 50 €\n- Hotel\n  - Up to 4 stars" in text
    assert "| City | Rate |\n|---|---|\n| Paris | 180 |" in text
    assert '```\n# not a heading\nprint("hi")\n```' in text
    assert "\\# also not a heading" in text
    assert_tidy(text)


def test_html_title_falls_back_to_the_first_h1(tmp_path: Path) -> None:
    page = "<html><body><div><h1>Security  checklist</h1><p>Rotate keys.</p></div></body></html>"
    loaded = load_file(write(tmp_path / "security.htm", page))
    assert loaded.title == "Security checklist"
    assert loaded.text == "# Security checklist\n\nRotate keys."


def test_html_without_title_or_h1_is_titled_after_the_file(tmp_path: Path) -> None:
    loaded = load_file(write(tmp_path / "faq_page.html", "<p>Line one<br>Line two</p><div>Loose <i>text</i></div>"))
    assert loaded.title == "Faq page"
    assert loaded.text == "Line one\nLine two\n\nLoose text"


def test_html_reads_a_single_article_and_keeps_its_header(tmp_path: Path) -> None:
    page = (
        "<body><header>Site banner</header><article><header><h1>Post title</h1></header>"
        "<p>Body text.</p></article><footer>Site footer</footer></body>"
    )
    loaded = load_file(write(tmp_path / "post.html", page))
    assert loaded.text == "# Post title\n\nBody text."


def test_html_of_only_noise_has_no_text(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.html", "<html><head><title>T</title><script>x()</script></head><body></body></html>")
    assert "no text found" in load_error(path).reason


# --- PDF --------------------------------------------------------------------------------------


def test_pdf_title_comes_from_its_metadata(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "handbook.pdf",
        ["The infor-\nmation in this handbook applies to all staff and continues\non this line.", "Second paragraph."],
        title="Employee Handbook",
    )
    loaded = load_file(path)
    assert loaded.title == "Employee Handbook"
    assert "The information in this handbook applies to all staff and continues on this line." in loaded.text
    assert "Second paragraph." in loaded.text
    assert_tidy(loaded.text)


def test_pdf_without_title_is_titled_after_the_file_and_pages_are_joined(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in ("First page text.", "Second page text."):
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(tmp_path / "quarterly_report.pdf"))
    loaded = load_file(tmp_path / "quarterly_report.pdf")
    assert loaded.title == "Quarterly report"
    assert loaded.text == "First page text.\n\nSecond page text."


def test_pdf_without_a_text_layer_is_reported(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 100, style="F")  # like a scanned page: marks, no text
    pdf.output(str(tmp_path / "scan.pdf"))
    assert "no text found" in load_error(tmp_path / "scan.pdf").reason


def test_corrupt_pdfs_are_reported(tmp_path: Path) -> None:
    good = make_pdf(tmp_path / "good.pdf", ["Some text."]).read_bytes()
    garbage = write(tmp_path / "garbage.pdf", b"this is not a PDF at all, just words " * 20)
    truncated = write(tmp_path / "truncated.pdf", good[: len(good) // 3])
    for path in (garbage, truncated):
        assert "corrupt PDF" in load_error(path).reason


def test_encrypted_pdf_is_reported_not_crashed(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "salaries.pdf", ["Confidential numbers."], password="s3cret")
    error = load_error(path)
    assert "encrypted" in error.reason and "password" in error.reason


# --- Failures every format shares ---------------------------------------------------------------


def test_unsupported_type_names_the_supported_ones(tmp_path: Path) -> None:
    reason = load_error(write(tmp_path / "report.docx", b"PK\x03\x04")).reason
    assert reason.startswith("unsupported file type '.docx'")
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in reason
    assert "no file extension" in load_error(write(tmp_path / "Makefile", "all:\n")).reason


def test_suffixes_match_case_insensitively(tmp_path: Path) -> None:
    assert load_file(write(tmp_path / "README.MD", "# Read me\n\nHi.")).title == "Read me"


def test_missing_file_and_directory_are_reported(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nowhere.md").reason == "file not found"
    (tmp_path / "folder.md").mkdir()
    assert "is a directory" in load_error(tmp_path / "folder.md").reason


def test_empty_file_has_no_text(tmp_path: Path) -> None:
    for name in ("empty.md", "blank.txt", "zero.pdf"):
        assert "no text found" in load_error(write(tmp_path / name, "  \n\n")).reason


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading")
    path = write(tmp_path / "secret.md", "# Secret")
    path.chmod(0)
    try:
        assert load_error(path).reason == "permission denied"
    finally:
        path.chmod(0o600)


def test_library_exceptions_never_escape(tmp_path: Path) -> None:
    samples = {
        "a.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
        "b.pdf": b"%PDF-1.4\n" + bytes(range(256)) * 4,
        "c.html": b"<html><body><p>unclosed <b>tags <i>everywhere",
        "d.md": b"---\n---\n",
        "e.txt": bytes([0xC3, 0x28]) * 3 + b"\x00",
    }
    for name, data in samples.items():
        try:
            load_file(write(tmp_path / name, data))
        except LoadError:
            pass


# --- The shape the chunker relies on -----------------------------------------------------------


def heading_paths(path: Path) -> list[tuple[str, ...]]:
    loaded = load_file(path)
    doc = Document(doc_id="d", title=loaded.title, source="", path=str(path), text=loaded.text,
                   content_hash="", scope=Scope.public())
    return [chunk.heading_path for chunk in chunk_document(doc)]


def test_every_format_gives_the_chunker_its_headings_and_no_false_ones(tmp_path: Path) -> None:
    markdown = "Guide\n=====\n\nIntro.\n\nSetup\n-----\n\n```sh\n# comment\n```\n\n### Linux\n\nUse apt.\n"
    html = "<title>Guide</title><h1>Guide</h1><p>Intro.</p><h2>Setup</h2><pre># comment</pre><h3>Linux</h3><p>Use apt.</p>"
    expected = [(), ("Setup",), ("Setup", "Linux")]
    assert heading_paths(write(tmp_path / "guide.md", markdown)) == expected
    assert heading_paths(write(tmp_path / "guide.html", html)) == expected
    pdf = make_pdf(tmp_path / "guide.pdf", ["# 1 priority is safety.", "```", "Done."])
    assert heading_paths(pdf) == [()]
    assert not re.search(r"^(#|```)", load_file(pdf).text, flags=re.MULTILINE)


# --- discover -----------------------------------------------------------------------------------


def test_discover_walks_folders_in_order_skipping_hidden_and_unsupported(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "b.md", "# B")
    write(docs / "a.txt", "A")
    write(docs / "logo.png", b"\x89PNG")
    write(docs / ".secret.md", "hidden")
    write(docs / ".git" / "config.txt", "hidden too")
    write(docs / "guides" / "setup.HTML", "<p>Setup</p>")
    write(docs / "guides" / "deep" / "z.pdf", b"%PDF")
    found = discover([docs])
    assert found == Discovered(
        files=(docs / "a.txt", docs / "b.md", docs / "guides" / "deep" / "z.pdf", docs / "guides" / "setup.HTML"),
        skipped=((docs / "logo.png", "unsupported file type '.png'"),),
    )


def test_discover_keeps_explicit_files_even_unsupported_or_missing(tmp_path: Path) -> None:
    png = write(tmp_path / "chart.png", b"\x89PNG")
    missing = tmp_path / "missing.md"
    found = discover([png, missing])
    assert found.files == (png, missing)
    assert found.skipped == ()
    with pytest.raises(LoadError, match="unsupported file type"):
        load_file(found.files[0])


def test_discover_deduplicates_files_reached_twice(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    note = write(docs / "note.md", "# Note")
    other = write(docs / "sub" / "other.md", "# Other")
    found = discover([docs, note, docs / "sub", tmp_path / "docs" / "." / "note.md"])
    assert found.files == (note, other)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_discover_survives_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    note = write(docs / "note.md", "# Note")
    (docs / "loop").symlink_to(docs, target_is_directory=True)
    (docs / "alias.md").symlink_to(note)
    (docs / "dangling.md").symlink_to(docs / "gone.md")
    found = discover([docs])
    assert found.files == (docs / "alias.md",)
    assert found.skipped == ((docs / "dangling.md", "broken symbolic link"),)


def test_html_nested_too_deeply_is_a_clear_failure_of_that_file(tmp_path: Path) -> None:
    deep = b"<html><body>" + b"<div>" * 5000 + b"deep text" + b"</div>" * 5000 + b"</body></html>"
    error = load_error(write(tmp_path / "deep.html", deep))
    assert error.reason == "its structure is nested too deeply to read"


def test_a_page_wrapped_in_a_form_keeps_its_text_but_not_its_controls(tmp_path: Path) -> None:
    page = (b"<html><body><form action='/x'><main><h1>Badge policy</h1><p>Wear your badge on site.</p>"
            b"<label>Name</label><input value='typed'><button>Submit request</button></main></form></body></html>")
    loaded = load_file(write(tmp_path / "badges.html", page))
    assert "Wear your badge on site." in loaded.text
    assert "Submit request" not in loaded.text and "typed" not in loaded.text


def test_markdown_keeps_angle_brackets_that_are_not_html(tmp_path: Path) -> None:
    text = "# Types\n\nReturn a List<String> or Optional<Foo>; x<y and z>w. <b>Bold</b> <span class='k'>kept</span>.\n"
    loaded = load_file(write(tmp_path / "types.md", text))
    assert "Return a List<String> or Optional<Foo>; x<y and z>w. Bold kept." in loaded.text
