"""The extractive answer says "not found" when the passages are on the question's subject but no unit
of them holds what was asked: retrieval judges a passage by its subject, a quote must answer.

Each case here was answered wrongly before (a duration about something else, a code of conduct for a
dress code); the handbook cases run the real answering path on the bundled handbook.
"""

from __future__ import annotations

import pytest

from bot.answer_eval import load_dataset, run_questions, summarise
from bot.answering import answer_question
from bot.demo import HANDBOOK
from bot.facts import contains_fact
from bot.generation import ExtractiveGenerator, GenerationRequest
from bot.generation.answer_units import answer_type
from knowledge.access import Audience, Scope
from knowledge.types import Passage

CONFLICTS_AND_REPORTS = (
    "Having a conflict is not wrongdoing; hiding it is. Disclose potential conflicts using the Conflict of "
    "interest form. The People team and Legal review each disclosure within 10 working days and agree any "
    "steps needed.\n\n"
    "We take every report seriously and look into it promptly and fairly. We will keep the details as "
    "confidential as we can while still investigating properly.")


def _generate(embedder, question: str, text: str, *, unfamiliar: tuple[str, ...] = ()) -> str:
    passage = Passage(doc_id="d1", chunk_id="d1:0", title="Doc", source="docs/1.md", heading_path=(),
                      text=text, scope=Scope.public(), score=1.0, similarity=0.6)
    request = GenerationRequest(question=question, passages=[passage], unfamiliar_words=unfamiliar)
    return ExtractiveGenerator(embedder).generate(request).text


def test_a_typed_question_with_no_unit_of_that_kind_near_its_words_is_not_answered(real_embedder):
    question = "how long do we keep employee relations investigation files"
    # "within 10 working days" is a duration, in a paragraph about reviewing disclosures.
    assert _generate(real_embedder, question, CONFLICTS_AND_REPORTS) == ""
    answered = _generate(real_embedder, question,
                         CONFLICTS_AND_REPORTS + "\n\nInvestigation files are kept for 7 years after the case closes.")
    assert "7 years" in answered.splitlines()[1]


def test_the_asked_kind_counts_in_the_list_item_that_names_the_subject(real_embedder):
    # The number is in one sentence, the words of the question in the next one of the same item.
    speak_up = ("1. Talk to your manager.\n"
                "2. Contact the Speak Up line at 1-888-555-0147. It is run by an independent company, and you "
                "can report anonymously.")
    assert "1-888-555-0147" in _generate(real_embedder, "is there an anonymous way to report something? phone number?",
                                         speak_up)


@pytest.mark.parametrize("question", ["who issues staff parking permits?", "who issues staff parking permits, and when?"])
def test_who_and_when_are_not_held_to_a_kind_people_and_times_are_written_in_too_many_ways(real_embedder, question):
    answer = _generate(real_embedder, question, "Staff parking permits are issued by facilities every spring.")
    assert "issued by facilities" in answer


def test_lines_are_numbered_through_a_passage_not_restarted_per_chunk():
    # Two chunks of one document: the first line of the second chunk is not the first chunk's first
    # line (else a figure there would borrow the other line's words).
    from bot.generation.extractive import passage_units
    from knowledge.types import PassagePiece

    pieces = (PassagePiece((), "Investigation files are kept confidential by the People team.\nAsk Legal first."),
              PassagePiece((), "Reviews take 10 working days.\nThe form is in the People Hub."))
    passage = Passage(doc_id="d1", chunk_id="d1:0", title="Doc", source="docs/1.md", heading_path=(),
                      text="\n".join(p.text for p in pieces), scope=Scope.public(), score=1.0, similarity=0.6,
                      pieces=pieces)
    assert [u.line for u in passage_units(passage)] == [0, 1, 2, 3]


def test_a_question_about_something_no_visible_document_mentions_is_not_answered(real_embedder):
    conduct = "If you see or experience something that goes against this code, please tell us."
    assert _generate(real_embedder, "is there a dress code", conduct, unfamiliar=("dress",)) == ""
    # The unfamiliar word is what decides: the same question, its words all used somewhere, is quoted.
    assert _generate(real_embedder, "is there a dress code", conduct) != ""


def test_an_unfamiliar_word_beside_a_close_answer_is_still_answered(real_embedder):
    reserve = "Finance will hold a contingency reserve of 3 percent of total operating spend."
    assert "3 percent" in _generate(real_embedder, "how big is the contingency reserve", reserve, unfamiliar=("big",))


def test_one_answerable_question_of_several_is_answered(real_embedder):
    leaders = "| Group | Leader |\n|---|---|\n| Finance and Legal | Priya Ramaswamy, CFO |\n| Sales | Hollis Brandt, VP Sales |"
    answer = _generate(real_embedder, "whos the cfo here? need to cc them on a big deal", leaders,
                       unfamiliar=("big", "deal"))
    assert "Priya Ramaswamy" in answer


@pytest.mark.parametrize(("question", "kind"), [
    ("what standard of proof do we use when deciding if an allegation is substantiated", None),
    ("who do I call when my laptop breaks", "person"),
    ("ok and when is it due", "date"),
    ("when's all hands", "date"),
    ("does it roll over? and by when do i have to use it", "date"),
])
def test_when_asks_for_a_date_only_where_it_starts_a_question(question, kind):
    assert answer_type(question) == kind


@pytest.mark.parametrize(("channel", "question"), [
    ("C0SALES", "how long do we keep employee relations investigation files"),  # the answer is in hr/
    ("C0GENERAL", "whats the wifi password at the boulder office"),
    ("C0PEOPLE", "is there a dress code"),
])
def test_handbook_questions_it_does_not_answer_are_not_found(handbook_services, channel, question):
    answer = answer_question(question, Audience.for_conversation(channel), handbook_services.answer_deps)
    assert not answer.found and answer.citations == ()


@pytest.mark.parametrize(("channel", "question", "fact"), [
    ("C0PEOPLE", "how long do we keep investigation case files", "7 years"),
    ("C0GENERAL", "when's all hands", "first Thursday of every month"),
    ("C0ENGINEER", "who's our vp eng again", "Kwame Asante-Reyes"),
    ("C0SALES", "whos the cfo here? need to cc them on a big deal", "Priya Ramaswamy"),
])
def test_handbook_questions_it_answers_hold_the_fact(handbook_services, channel, question, fact):
    answer = answer_question(question, Audience.for_conversation(channel), handbook_services.answer_deps)
    assert answer.found and contains_fact(answer.text, fact), answer.text


def test_the_labelled_handbook_set_meets_the_issues_targets(handbook_services):
    # The benchmark's figures, as a regression check (behaviour, not time): every unanswerable
    # question "not found", at least 90% of the facts, at least 95% of answerable questions found.
    summary = summarise(run_questions(load_dataset(HANDBOOK / "answers.jsonl"), handbook_services.answer_deps),
                        "extractive")
    assert summary["not_found_accuracy"]["unanswerable"] == 1.0
    assert summary["fact_recall"] >= 0.90
    assert summary["not_found_accuracy"]["answerable"] >= 0.95


PUBLIC_DOCS = {
    "office.md": "# Boulder office\n\nThe Boulder office is on Pearl Street. Visitors sign in at the front desk.\n\n"
                 "The guest network is called Lumen-Guest.\n",
    "leave.md": "# Leave\n\nEveryone gets 18 vacation days a year. Unused days expire on March 31.\n",
    "conduct.md": "# Code of conduct\n\nIf you see or experience something that goes against this code, please tell "
                  "your manager or the People team.\n",
}
SECRET_DOC = ("# Office network and HR records\n\nThe wifi password at the Boulder office is hunter2-blue. "
              "The dress code is business casual. Investigation files are kept for 7 years.\n")


@pytest.mark.parametrize("question", [
    "whats the wifi password at the boulder office", "is there a dress code",
    "how long are investigation files kept", "how many vacation days do we get",
])
def test_a_channels_answer_is_the_same_with_or_without_a_document_it_may_not_see(tmp_path, real_embedder, question):
    # Whether lorebot answers, and what it quotes, follows from the documents the channel may see
    # alone: a private document holding every word of the question changes nothing for #general.
    from bot.app import build_services
    from bot.config import load_settings

    public, secret = tmp_path / "public", tmp_path / "secret"
    public.mkdir(), secret.mkdir()
    for name, text in PUBLIC_DOCS.items():
        (public / name).write_text(text)
    (secret / "network.md").write_text(SECRET_DOC)
    answers = []
    for with_secret in (False, True):
        services = build_services(load_settings(data_dir=tmp_path / f"data-{with_secret}"), embedder=real_embedder)
        try:
            services.ingestor.ingest_paths([public], scope=Scope.public())
            if with_secret:
                services.ingestor.ingest_paths([secret], scope=Scope.channels(["C0IT"]))
            answer = answer_question(question, Audience.for_conversation("C0GENERAL"), services.answer_deps)
            answers.append((answer.found, answer.text, [c.title for c in answer.citations]))
        finally:
            services.close()
    assert answers[0] == answers[1]
    assert "hunter2" not in answers[1][1] and "business casual" not in answers[1][1]
