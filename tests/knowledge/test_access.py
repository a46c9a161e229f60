"""The access model's semantics: scopes, audiences, and the one filter between them."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from knowledge.access import PUBLIC, AccessFilter, Audience, Scope, filter_for
from knowledge.errors import AccessError


def test_ingest_without_a_scope_is_an_error_never_a_default():
    with pytest.raises(AccessError, match="--channel"):
        Scope.from_options(channels=None, public=False)
    with pytest.raises(AccessError):
        Scope.from_options(channels=[], public=False)


def test_public_and_channels_together_is_an_error():
    with pytest.raises(AccessError, match="not both"):
        Scope.from_options(channels=["C1AB"], public=True)


@pytest.mark.parametrize("bad", ["general", "#eng", "c0lower", "D0DM", "C", "C0 ENG", "C0'; DROP"])
def test_a_scope_takes_only_channel_ids(bad):
    with pytest.raises(AccessError):
        Scope.channels([bad])


def test_scope_labels():
    assert Scope.public().as_list() == [PUBLIC]
    assert Scope.channels(["C2X", "C1X"]).as_list() == ["C1X", "C2X"]
    assert Scope.from_labels(["public"]).is_public
    assert Scope.from_labels(["G1X", "C1X"]) == Scope.channels(["C1X", "G1X"])


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_an_empty_audience_is_refused(empty):
    with pytest.raises(AccessError, match="audience"):
        Audience.for_conversation(empty)


def test_the_filter_refuses_a_forged_empty_audience():
    with pytest.raises(AccessError):
        filter_for(Audience(""))
    with pytest.raises(AccessError):
        filter_for(None)


def test_a_channel_sees_public_and_its_own_documents_only():
    access = filter_for(Audience.for_conversation("C0ENG"))
    assert access.allows(Scope.public())
    assert access.allows(Scope.channels(["C0ENG"]))
    assert access.allows(Scope.channels(["C0FIN", "C0ENG"]))
    assert not access.allows(Scope.channels(["C0FIN"]))


def test_a_private_channel_is_a_channel_too():
    assert filter_for(Audience.for_conversation("G0SECRET")).allows(Scope.channels(["G0SECRET"]))


def test_a_direct_message_sees_public_documents_only():
    access = filter_for(Audience.for_conversation("D0DM"))
    assert access == AccessFilter(frozenset({PUBLIC}))
    assert not access.allows(Scope.channels(["C0ENG"]))


def test_the_lance_predicate_names_exactly_the_allowed_labels():
    where = filter_for(Audience.for_conversation("C0ENG")).lance_where()
    assert where == "array_has_any(scope, ['C0ENG', 'public'])"


# --- Attacks on the ID checks (Hypothesis) -------------------------------------------------------

CHANNEL_SHAPE = re.compile(r"[CG][A-Z0-9]{2,}")
CONVERSATION_SHAPE = re.compile(r"[CGD][A-Z0-9]{2,}")

# Strings close to an ID: real IDs with something added around or inside them (whitespace,
# control characters, quotes, another script's letters), and text from every corner of Unicode.
_ids = st.from_regex(r"[CGD][A-Z0-9]{2,10}", fullmatch=True)
_noise = st.sampled_from(["\n", "\r\n", " ", "\t", "\x00", "\x0b", "\u2028", "\u00a0", "'", ",", "Ｃ", "٣", "ǅ"])
_near_ids = st.one_of(
    st.tuples(_ids, _noise).map("".join),
    st.tuples(_noise, _ids).map("".join),
    st.tuples(_ids, _noise, _ids).map("".join),
    st.text(min_size=1, max_size=12),
    _ids,
)


@pytest.mark.parametrize("smuggled", ["C0ALPHA01\n", "G0SECRET\n", "C0ENG\r\n", " C0ENG", "C0ENG\t"])
def test_an_id_with_a_trailing_newline_or_space_is_not_a_channel(smuggled):
    with pytest.raises(AccessError, match="not a Slack channel ID"):
        Scope.channels([smuggled])
    with pytest.raises(AccessError, match="not a Slack conversation ID"):
        Audience.for_conversation(smuggled)


@given(st.lists(_near_ids, min_size=1, max_size=3))
@example(["C0ALPHA01\n"])
def test_every_label_a_scope_accepts_is_exactly_a_channel_id(candidates):
    try:
        scope = Scope.channels(candidates)
    except AccessError:
        assert not all(CHANNEL_SHAPE.fullmatch(c) for c in candidates)
        return
    assert all(CHANNEL_SHAPE.fullmatch(label) for label in scope.labels), scope.labels
    assert scope.labels == frozenset(candidates)


@given(_near_ids)
@example("D0DM\n")
def test_every_audience_accepted_is_exactly_a_conversation_id(candidate):
    try:
        audience = Audience.for_conversation(candidate)
    except AccessError:
        assert not CONVERSATION_SHAPE.fullmatch(candidate)
        return
    assert audience.conversation_id == candidate and CONVERSATION_SHAPE.fullmatch(candidate)
    assert not any(ch.isspace() or not ch.isprintable() for ch in candidate)


def test_a_forged_audience_with_a_malformed_id_gets_no_filter():
    for forged in ("C0ENG\n", "C0ENG', 'public", "public"):
        with pytest.raises(AccessError, match="not a Slack conversation ID"):
            filter_for(Audience(forged))
