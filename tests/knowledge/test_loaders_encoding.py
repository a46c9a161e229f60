"""A UTF-8 file with a few bad bytes stays UTF-8 (the bad bytes become U+FFFD, and a warning says
so); only a file that is clearly not UTF-8 is read as Windows-1252."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.loaders.html import load_html
from knowledge.loaders.markdown import load_markdown
from knowledge.loaders.text import decode_text, load_text

PHRASE = "café – naïve"
# One stray byte (a lone continuation byte, as a bad copy or a truncated write leaves) mid-file.
DAMAGED = f"Notes: {PHRASE}\n".encode() + b"\x93" + f"\nThe {PHRASE} résumé.\n".encode()


@pytest.mark.parametrize(("name", "load"), [("notes.txt", load_text), ("notes.md", load_markdown),
                                             ("notes.html", load_html)])
def test_one_bad_byte_does_not_turn_a_utf8_file_into_mojibake(name, load, caplog):
    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        loaded = load(Path("docs") / name, DAMAGED)

    assert loaded.text.count(PHRASE) == 2 and "résumé" in loaded.text
    assert "Ã" not in loaded.text  # the mojibake "cafÃ©" of a cp1252 reading
    assert loaded.text.count("\ufffd") == 1
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(Path("docs") / name) in warning and "1 invalid" in warning


def test_a_windows_1252_file_is_still_read_as_windows_1252(caplog):
    data = f"Notes: {PHRASE} “quoted” €5\n".encode("cp1252")
    with caplog.at_level(logging.WARNING, logger="knowledge.loaders"):
        assert decode_text(Path("legacy.txt"), data) == f"Notes: {PHRASE} “quoted” €5\n"
    assert "\ufffd" not in caplog.text


def test_a_file_with_more_bad_bytes_than_utf8_characters_is_not_utf8():
    # One valid UTF-8 sequence by accident ("Ã©" in cp1252 is C3 A9) among cp1252 accents.
    data = "Ã© then café, naïve, déjà vu, über".encode("cp1252")
    assert decode_text(Path("legacy.txt"), data) == "Ã© then café, naïve, déjà vu, über"


_TEXT = st.text(alphabet=st.sampled_from(list("abc xyz.\n") + list("éïüß–€日本✓")), min_size=1, max_size=80)


@settings(max_examples=150)
@given(text=_TEXT.filter(lambda t: any(ord(c) > 127 for c in t)), data=st.data())
def test_stray_bytes_in_utf8_cost_one_replacement_each_and_nothing_else(text, data):
    encoded = [c.encode() for c in text]
    budget = sum(1 for c in text if ord(c) > 127)  # no more bad sequences than good characters
    spots = data.draw(st.lists(st.integers(0, len(encoded)), min_size=1, max_size=budget))
    strays = [data.draw(st.integers(0x80, 0xBF)) for _ in spots]
    for spot, stray in sorted(zip(spots, strays), reverse=True):
        encoded.insert(spot, bytes([stray]))

    decoded = decode_text(Path("p.txt"), b"".join(encoded))

    assert decoded.replace("\ufffd", "") == text
    assert decoded.count("\ufffd") == len(spots)
