"""The access model's semantics: scopes, audiences, and the one filter between them."""

from __future__ import annotations

import pytest

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
