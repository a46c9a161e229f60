"""Typos and shorthand in questions are mended from the words of documents the audience may see, and
only from those: mending never tells a channel which words private documents use."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.query_words import QueryVocabulary, _one_edit

PUBLIC, SECRET = frozenset({"public"}), frozenset({"public", "C0SECRET"})
HANDBOOK = [
    (["public"], "The wellness reimbursement is 60 USD a month. As of January we are 118 people."),
    (["public"], "Engineering is led by the VP Engineering. Ask the vendor for an invoice."),
    (["C0SECRET"], "Project Nightingale launches with the acquisition of Quillmark."),
]


def vocabulary(dictionary=frozenset({"drone", "jury", "files"})) -> QueryVocabulary:
    return QueryVocabulary.build(HANDBOOK, dictionary=dictionary)


def test_a_typo_becomes_the_documents_spelling():
    assert vocabulary().mend("is there a gym reimbursment?", PUBLIC) == "is there a gym reimbursement?"
    assert vocabulary().mend("who is the vnedor", PUBLIC) == "who is the vendor"


def test_workplace_shorthand_is_spelt_out_unless_the_documents_use_it():
    assert vocabulary().mend("how many ppl work here, who's our vp eng", PUBLIC) == \
        "how many people work here, who's our vp engineering"
    uses_pto = QueryVocabulary.build([(["public"], "PTO is earned monthly.")])
    assert uses_pto.mend("how much pto do i get", PUBLIC) == "how much pto do i get"


def test_real_words_the_documents_do_not_use_stay_as_asked():
    # "drone", "jury" and "files" are words, not typos of "done", "july" or "miles".
    v = QueryVocabulary.build([(["public"], "Done by July. Miles are paid per mile.")],
                              dictionary=frozenset({"drone", "jury", "files"}))
    question = "we pay a drone contractor; how many days of jury duty; where are the files"
    assert v.mend(question, PUBLIC) == question


def test_short_words_and_contractions_are_left_alone():
    v = QueryVocabulary.build([(["public"], "The wiki lists done tasks.")], dictionary=frozenset())
    assert v.mend("whats the wifi password, dont know", PUBLIC) == "whats the wifi password, dont know"


def test_without_a_dictionary_a_word_is_only_respelt_within_its_stem():
    v = QueryVocabulary.build(HANDBOOK, dictionary=None)
    assert v.mend("gym reimbursment, vendro", PUBLIC) == "gym reimbursement, vendro"


def test_a_private_documents_words_are_never_candidates_for_another_channel():
    v = vocabulary(dictionary=frozenset())
    assert v.mend("what is projct nightngale", PUBLIC) == "what is projct nightngale"
    assert v.mend("what is projct nightngale", SECRET) == "what is project nightingale"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["nightngale", "quilmark", "acquisiton", "launchs", "projct", "reimbursment",
                                 "ppl", "vendro", "the", "is", "what", "with"]), min_size=1, max_size=8))
def test_mending_for_an_audience_is_the_same_with_or_without_documents_it_cannot_see(words):
    # The property that makes mending no oracle: what a channel's question becomes depends on
    # the documents that channel may see, and on nothing else.
    question = " ".join(words)
    without_private = QueryVocabulary.build([h for h in HANDBOOK if h[0] == ["public"]], dictionary=frozenset())
    assert vocabulary(dictionary=frozenset()).mend(question, PUBLIC) == without_private.mend(question, PUBLIC)


@given(st.text(alphabet="abcdef", min_size=1, max_size=8), st.text(alphabet="abcdef", min_size=1, max_size=8))
def test_one_edit_is_symmetric_and_matches_a_plain_distance(a, b):
    assert _one_edit(a, b) == _one_edit(b, a) == (_distance(a, b) == 1)


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance (adjacent transpositions count one)."""
    d = [[max(i, j) if min(i, j) == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]
