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


def test_a_real_word_the_documents_use_in_another_form_stays_as_asked():
    # "approve" is one letter from "approved", "reporter" from "reported": both are words, spelt right.
    v = QueryVocabulary.build([(["public"], "Invoices are approved by the controller. Leaks are reported to Legal.")],
                              dictionary=frozenset({"approve", "approves", "reporter", "invoices"}))
    assert v.mend("who needs to approve that, a reporter asked", PUBLIC) == "who needs to approve that, a reporter asked"
    assert v.mend("who approves invoces", PUBLIC) == "who approves invoices"


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


def test_words_no_visible_document_uses_are_unfamiliar_in_any_form():
    v = vocabulary()
    # "reimbursements" is another form of a word they use; "ic4", "whats" and "is" are not subjects.
    assert v.unfamiliar("whats the wifi password? is ic4 reimbursements for the gym", PUBLIC) == ("wifi", "password", "gym")
    assert v.unfamiliar("nightingale acquisition", PUBLIC) == ("nightingale", "acquisition")
    assert v.unfamiliar("nightingale acquisition", SECRET) == ()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["nightingale", "quillmark", "acquisition", "launches", "project", "wifi",
                                 "reimbursement", "vendor", "the", "is", "what", "with", "ic4"]), min_size=1, max_size=8))
def test_unfamiliar_words_for_an_audience_are_the_same_with_or_without_documents_it_cannot_see(words):
    # "Not found" follows from a question's unfamiliar words: they must tell a channel nothing about
    # the words of documents it may not see.
    question = " ".join(words)
    without_private = QueryVocabulary.build([h for h in HANDBOOK if h[0] == ["public"]], dictionary=frozenset())
    assert vocabulary().unfamiliar(question, PUBLIC) == without_private.unfamiliar(question, PUBLIC)


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


# --- Kept a document at a time -------------------------------------------------------------------

POOL = ["reimbursement", "reimbursements", "vendor", "vendors", "nightingale", "project", "projects", "people",
        "ppl", "launch", "launches", "launched", "acquisition", "quillmark", "invoice", "invoices", "the", "wiki"]
QUESTIONS = ["reimbursment vendro", "nightngale projct ppl", "launchs acquisiton quilmark", "invoce peopel wikis",
             "reimbursemnts vendorss launche", "projecs invoicess"]
LABELS = st.sampled_from([("public",), ("C0A",), ("C0B",), ("C0A", "C0B")])
AUDIENCES = [frozenset({"public"}), frozenset({"public", "C0A"}), frozenset({"public", "C0B"}), frozenset({"C0A"})]
DOC_IDS = st.sampled_from(["d1", "d2", "d3", "d4"])
TEXTS = st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=6).map(" ".join), min_size=1, max_size=3)
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("put"), DOC_IDS, LABELS, TEXTS),
    st.tuples(st.just("rescope"), DOC_IDS, LABELS),
    st.tuples(st.just("remove"), DOC_IDS),
), max_size=12)


def assert_same_as_built_from(vocabulary: QueryVocabulary, documents: dict) -> None:
    """``vocabulary`` is, word for word and question for question, the one built from scratch from
    ``documents`` (doc_id → (labels, chunk texts))."""
    scratch = QueryVocabulary.build([(labels, text) for labels, texts in documents.values() for text in texts],
                                    dictionary=vocabulary.dictionary)
    assert vocabulary.words == scratch.words
    assert vocabulary.stems == scratch.stems
    assert dict(vocabulary.deletions) == dict(scratch.deletions)
    for allowed in AUDIENCES:
        for question in QUESTIONS:
            assert vocabulary.mend(question, allowed) == scratch.mend(question, allowed), (question, allowed)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_a_vocabulary_kept_a_document_at_a_time_is_the_one_built_from_the_documents_there_are(operations):
    # Adding, editing, rescoping and removing documents leaves no trace: a word a document took
    # away, or moved under another scope, mends no question of an audience that no longer sees it.
    vocabulary, documents = QueryVocabulary(dictionary=frozenset({"launch"})), {}
    for operation in operations:
        if operation[0] == "put":
            _, doc_id, labels, texts = operation
            vocabulary.put_document(doc_id, str(hash(tuple(texts))), labels, texts)
            documents[doc_id] = (labels, texts)
        elif operation[0] == "rescope":
            _, doc_id, labels = operation
            assert vocabulary.rescope_document(doc_id, labels) == (doc_id in documents)
            if doc_id in documents:
                documents[doc_id] = (labels, documents[doc_id][1])
        else:
            assert vocabulary.remove_document(operation[1]) == (operation[1] in documents)
            documents.pop(operation[1], None)
        assert_same_as_built_from(vocabulary, documents)
    assert {d: k[1] for d, k in vocabulary.document_keys().items()} == {d: frozenset(l) for d, (l, _) in documents.items()}


def test_a_document_narrowed_to_a_channel_no_longer_mends_public_questions():
    v = QueryVocabulary(dictionary=frozenset())
    v.put_document("plan", "h1", ["public"], ["Project Nightingale launches in May."])
    v.put_document("perks", "h2", ["public"], ["The gym reimbursement is 60 USD."])
    assert v.mend("what is projct nightngale", PUBLIC) == "what is project nightingale"
    v.rescope_document("plan", ["C0SECRET"])
    assert v.mend("what is projct nightngale", PUBLIC) == "what is projct nightngale"
    assert v.mend("what is projct nightngale", frozenset({"C0SECRET"})) == "what is project nightingale"
    (stem,) = v.analyzer.terms("nightingale")
    assert v.stems[stem] == {"C0SECRET": 1}
    v.remove_document("plan")
    assert "nightingale" not in v.words and stem not in v.stems
    assert all("nightingale" not in similar for similar in v.deletions.values())


def test_questions_are_mended_while_documents_change():
    # Documents change in place, one at a time under the vocabulary's lock: a question mended
    # meanwhile never meets a half-changed table.
    import threading

    v, failures, stop = QueryVocabulary(dictionary=frozenset()), [], threading.Event()
    v.put_document("kept", "h", ["public"], ["The vendor sends the invoice."])

    def ask():
        try:
            while not stop.is_set():
                assert v.mend("the vendro invoce", PUBLIC) == "the vendor invoice"
        except (AssertionError, RuntimeError, KeyError) as e:  # pragma: no cover - only on failure
            failures.append(e)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for i in range(300):
            v.put_document(f"d{i % 7}", str(i), ["public", "C0A"][: 1 + i % 2], [f"word{i} reimbursement {i} vendors"])
            v.rescope_document(f"d{(i + 3) % 7}", ["C0B"])
            v.remove_document(f"d{(i + 5) % 7}")
    finally:
        stop.set()
        asker.join()
    assert not failures
