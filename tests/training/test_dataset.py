"""The dataset builder: only endorsed answers built on passages everyone may read become examples,
scrubbed, de-duplicated, split the same way every time, and described by a manifest that matches."""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import training.dataset
from knowledge.errors import ConfigurationError
from training.chat_format import SYSTEM_PROMPT, fence_passage, user_turn
from training.dataset import DatasetOptions, build_dataset
from training.feedback import DOWN, UP, FeedbackStore, Interaction, UsedPassage, new_interaction_id

START = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def a_passage(chunk: str, text: str, *, scope: tuple[str, ...] = ("public",), cited_as: int | None = None,
              title: str | None = None) -> UsedPassage:
    return UsedPassage(doc_id=chunk.split("#")[0], chunk_id=chunk, title=title or chunk.split("#")[0].title(),
                       source=f"https://wiki.example.com/{chunk}", text=text, scope=scope, score=0.5,
                       cited_as=cited_as, quote=text if cited_as else None)


def an_answer(question: str, answer: str = "Ten days a year [1].", passages: tuple[UsedPassage, ...] | None = None,
              *, minutes: int = 0, **changes) -> Interaction:
    if passages is None:
        slug = re.sub(r"\W+", "-", question.lower()).strip("-")
        passages = (a_passage(f"{slug}#0", f"What the handbook says about {question}", cited_as=1),
                    a_passage(f"{slug}#1", f"Background on {question}"))
    fields = dict(interaction_id=new_interaction_id(), channel_id="C0GENERAL", user_id="U0ASKER",
                  surface="mention", asked=question, question=question, answer=answer, found=True,
                  generator="tgi", passages=passages, created_at=START + timedelta(minutes=minutes),
                  conversation_kind="public")
    return Interaction(**{**fields, **changes})


def record(store: FeedbackStore, interaction: Interaction, *, up: int = 1, down: int = 0) -> Interaction:
    store.record_interaction(interaction)
    for n in range(up):
        store.cast_vote(interaction.interaction_id, user_id=f"U0UP{n}", value=UP, via="reaction", at=10.0 + n)
    for n in range(down):
        store.cast_vote(interaction.interaction_id, user_id=f"U0DOWN{n}", value=DOWN, via="button", at=10.0 + n)
    return interaction


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def examples(out: Path) -> dict[str, dict]:
    return {e["id"]: e for name in ("train.jsonl", "heldout.jsonl") for e in lines(out / name)}


def every_byte(out: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(out.iterdir()))


def passages_in(user_message: str) -> dict[int, str]:
    """Passage number → its text, as the user turn shows them."""
    return {int(n): text.strip() for n, text in re.findall(r'<passage n="(\d+)"[^>]*>\n(.*?)\n</passage>',
                                                           user_message, re.S)}


@pytest.fixture
def store(open_database) -> FeedbackStore:
    return FeedbackStore(open_database())


# --- Eligibility --------------------------------------------------------------------------------

ONCALL = a_passage("eng/oncall.md#0", "The on-call engineer acknowledges pages within 15 minutes.",
                   scope=("C0ENGINEER", "C0SRE"), cited_as=1)


def test_an_answer_built_on_a_private_channel_passage_never_enters_the_dataset_however_loved(store, tmp_path):
    public = record(store, an_answer("How many vacation days do I get?"))
    secret_runbook = a_passage("eng/runbook.md#3", "Break-glass procedure for the payments database.",
                               scope=("C0SRE",))
    private = record(store, an_answer("How fast must on-call acknowledge a page?", "Within 15 minutes [1].",
                                      (ONCALL, secret_runbook), channel_id="C0ENGINEER"), up=10)

    report = build_dataset(store, tmp_path / "ds", DatasetOptions(distractors=4, heldout_fraction=0.5))

    assert report.eligible == 1 and report.excluded["private_passage"] == 1
    everything = every_byte(tmp_path / "ds")
    assert private.interaction_id not in everything
    assert "acknowledges pages" not in everything and "Break-glass" not in everything
    assert set(examples(tmp_path / "ds")) == {public.interaction_id}


def test_channels_an_admin_lists_as_trainable_admit_their_passages_but_only_all_of_them(store, tmp_path):
    answer = record(store, an_answer("How fast must on-call acknowledge a page?", "Within 15 minutes [1].",
                                     (ONCALL,)), up=2)

    partly = build_dataset(store, tmp_path / "a", DatasetOptions(trainable_channels=frozenset({"C0ENGINEER"})),
                           write=False)
    listed = build_dataset(store, tmp_path / "b", DatasetOptions(trainable_channels=frozenset({"C0ENGINEER",
                                                                                               "C0SRE"})))

    assert partly.eligible == 0 and partly.excluded["private_passage"] == 1
    assert listed.eligible == 1 and listed.excluded["private_passage"] == 0
    assert "acknowledges pages within 15 minutes" in examples(tmp_path / "b")[answer.interaction_id][
        "messages"][1]["content"]


def test_distractors_come_from_other_eligible_answers_and_never_from_private_ones(store, tmp_path):
    for n in range(12):
        record(store, an_answer(f"Question number {n} about topic {n * 7}?", "See [1].",
                                (a_passage(f"doc{n}#0", f"Public fact {n}.", cited_as=1),), minutes=n))
    record(store, an_answer("What is the payments break-glass procedure?", "Page the DBA [1].",
                            (a_passage("eng/runbook.md#3", "Private runbook text.", scope=("C0SRE",), cited_as=1),
                             a_passage("pub#0", "Public but used with a private one.")), minutes=20), up=10)

    build_dataset(store, tmp_path / "ds", DatasetOptions(distractors=3))

    for example in examples(tmp_path / "ds").values():
        shown = passages_in(example["messages"][1]["content"])
        assert len(shown) == 4 and len(set(shown.values())) == 4
        assert all(text.startswith("Public fact") for text in shown.values())
    assert "Private runbook" not in every_byte(tmp_path / "ds")


def test_an_uncited_passage_of_the_answer_is_the_first_distractor(store, tmp_path):
    answer = record(store, an_answer("How many vacation days do I get?", "Ten [1].",
                                     (a_passage("leave#0", "Ten days.", cited_as=1),
                                      a_passage("leave#1", "Carry-over rules."),
                                      a_passage("leave#2", "Sick leave is separate."))))

    build_dataset(store, tmp_path / "ds", DatasetOptions(distractors=1))

    shown = passages_in(examples(tmp_path / "ds")[answer.interaction_id]["messages"][1]["content"])
    assert sorted(shown.values()) == ["Carry-over rules.", "Ten days."]


def test_answers_the_documents_did_not_give_or_that_cite_nothing_are_left_out(store, tmp_path):
    record(store, an_answer("Where is the holiday calendar?", "The documents I can see don't answer this.",
                            found=False), up=3)
    record(store, an_answer("Who runs payroll?", "Finance runs payroll."), up=3)
    record(store, an_answer("What is the dress code?", "Smart casual [4].", minutes=1), up=3)
    record(store, an_answer("Old question about parking?", minutes=-60 * 24 * 30), up=3)
    kept = record(store, an_answer("How many vacation days do I get?", minutes=2), up=3)

    report = build_dataset(store, tmp_path / "ds", DatasetOptions(since=START - timedelta(days=1)))

    assert report.excluded["not_found"] == 1
    assert report.excluded["no_citations"] == 2  # no [n] at all; an [n] no passage is cited as
    assert report.excluded["before_since"] == 1
    assert set(examples(tmp_path / "ds")) == {kept.interaction_id}
    assert report.eligible + sum(report.excluded.values()) == 5


# --- Vote arithmetic ----------------------------------------------------------------------------


def test_an_answer_needs_enough_net_upvotes_and_a_retraction_changes_that(store, tmp_path):
    answer = record(store, an_answer("How many vacation days do I get?"), up=3, down=2)

    def eligible(**options) -> int:
        return build_dataset(store, tmp_path / "ds", DatasetOptions(**options), write=False).eligible

    assert eligible(min_net_votes=1) == 1  # 3 - 2 = 1 reaches 1
    assert eligible(min_net_votes=2) == 0
    assert build_dataset(store, tmp_path / "ds", DatasetOptions(min_net_votes=2),
                         write=False).excluded["not_endorsed"] == 1

    assert store.retract_vote(answer.interaction_id, user_id="U0DOWN0", value=DOWN, at=99.0)
    assert eligible(min_net_votes=2) == 1  # 3 - 1
    store.cast_vote(answer.interaction_id, user_id="U0UP0", value=DOWN, via="button", at=100.0)
    assert eligible(min_net_votes=1) == 0  # the latest vote wins: 2 - 2
    assert eligible(min_net_votes=0, min_upvotes=2) == 1
    assert eligible(min_net_votes=0, min_upvotes=3) == 0


def test_the_store_streams_every_interaction_with_its_totals_and_the_text_of_the_wanted_ones(store):
    old = record(store, an_answer("Old question about parking?", minutes=-60), up=3)
    loved = record(store, an_answer("How many vacation days do I get?"), up=3, down=1)
    disliked = record(store, an_answer("Where do I upload expense receipts?", minutes=1), up=1, down=2)
    ignored = record(store, an_answer("Who runs payroll?", minutes=2), up=0)

    tallies = list(store.tallied_interactions(since=START, min_upvotes=1, min_net_votes=1))

    assert [(t.interaction_id, t.upvotes, t.downvotes) for t in tallies] == [
        (old.interaction_id, 3, 0), (loved.interaction_id, 3, 1), (disliked.interaction_id, 1, 2),
        (ignored.interaction_id, 0, 0)]
    assert [t.interaction for t in tallies] == [None, loved, None, None]
    assert tallies[1].net_votes == 2
    assert [t.interaction for t in store.tallied_interactions()] == [old, loved, disliked, ignored]


def test_one_person_voting_many_times_counts_once(store, tmp_path):
    answer = record(store, an_answer("How many vacation days do I get?"), up=0)
    for at in range(5):
        store.cast_vote(answer.interaction_id, user_id="U0FAN", value=UP, via="reaction", at=float(at))

    assert build_dataset(store, tmp_path, DatasetOptions(min_upvotes=2), write=False).eligible == 0
    assert build_dataset(store, tmp_path, DatasetOptions(min_upvotes=1), write=False).eligible == 1


def test_answers_nobody_voted_on_are_not_endorsed(store, tmp_path):
    record(store, an_answer("How many vacation days do I get?"), up=0)

    report = build_dataset(store, tmp_path, write=False)

    assert report.eligible == 0 and report.excluded["not_endorsed"] == 1


# --- Scrubbing ----------------------------------------------------------------------------------


def test_addresses_numbers_keys_and_mentions_are_scrubbed_everywhere(store, tmp_path):
    passage = a_passage("it/access.md#0", "Write to it-help@example.com or call +1 (415) 555-0132. "
                        "The service account token is xoxb-123456789012-abcdefABCDEF.", cited_as=1)
    answer = record(store, an_answer(
        "What did <@U024BE7LH> say about the VPN password, my number is 202-555-0143?",
        "Mail <mailto:it-help@example.com|it-help@example.com> [1]; password: Tr0ub4dor&3 [1].",
        (passage,)))

    report = build_dataset(store, tmp_path / "ds")

    system, user, assistant = examples(tmp_path / "ds")[answer.interaction_id]["messages"]
    assert "<user> say about the VPN password, my number is <phone>?" in user["content"]
    assert "Write to <email> or call <phone>. The service account token is <secret>." in user["content"]
    assert re.fullmatch(r"Mail <email> \[1\]; password: <secret> \[1\]\.", assistant["content"])
    everything = every_byte(tmp_path / "ds")
    for raw in ("it-help@example.com", "555-0132", "555-0143", "xoxb-", "U024BE7LH", "Tr0ub4dor"):
        assert raw not in everything
    assert report.manifest["scrubbed"] == {"email": 2, "phone": 2, "secret": 2, "user": 1}


def test_an_answer_that_is_nothing_but_a_secret_is_left_out(store, tmp_path):
    record(store, an_answer("<@U024BE7LH>?"))
    record(store, an_answer("What is the deploy key?", "AKIAIOSFODNN7EXAMPLE [1]", minutes=1))

    report = build_dataset(store, tmp_path, write=False)

    assert report.eligible == 0 and report.excluded["empty_after_scrubbing"] == 2


# --- Near-duplicates ----------------------------------------------------------------------------


def test_of_near_duplicate_questions_the_better_voted_one_stays(store, tmp_path):
    first = record(store, an_answer("How many vacation days do I get?"), up=2)
    better = record(store, an_answer("how many vacation days do i get", minutes=1), up=5)
    plural = record(store, an_answer("How many vacation days do I get, per year?", minutes=2), up=1)
    other = record(store, an_answer("Where do I upload expense receipts?", minutes=3), up=1)

    report = build_dataset(store, tmp_path / "ds", DatasetOptions(near_duplicate_threshold=0.8))

    assert set(examples(tmp_path / "ds")) == {better.interaction_id, plural.interaction_id, other.interaction_id}
    assert report.excluded["near_duplicate"] == 1
    assert first.interaction_id not in every_byte(tmp_path / "ds")
    stricter = build_dataset(store, tmp_path / "ds", DatasetOptions(near_duplicate_threshold=0.7))
    assert set(examples(tmp_path / "ds")) == {better.interaction_id, other.interaction_id}
    assert stricter.excluded["near_duplicate"] == 2


def test_near_duplicates_are_found_among_thousands_of_questions():
    rng = random.Random(5)
    vocabulary = [f"word{n}" for n in range(2000)]
    distinct = [" ".join(rng.sample(vocabulary, 8)) for _ in range(3000)]
    asked = [variant for q in distinct for variant in (q + "?", q.upper(), f"{q}, please?")]
    index = training.dataset.NearDuplicateIndex(0.8)

    kept = [q for q in asked if index.add_unless_duplicate(q)]

    assert kept == [q + "?" for q in distinct]  # the please-variant is 8/9 similar: a duplicate


# --- Examples, split, files ---------------------------------------------------------------------


def test_citations_are_renumbered_to_the_order_the_passages_are_shown_in(store, tmp_path):
    carry = a_passage("leave#2", "Up to five days carry over.", cited_as=1, title="Carry-over")
    days = a_passage("leave#0", "Ten days a year.", cited_as=2, title="Leave")
    answer = record(store, an_answer("How many vacation days do I get?",
                                     "Five carry over [1], out of ten [2][1]. Ghost [9].",
                                     (days, a_passage("leave#1", "Sick leave is separate."), carry)))

    build_dataset(store, tmp_path / "ds", DatasetOptions(distractors=1, seed=7))

    system, user, assistant = examples(tmp_path / "ds")[answer.interaction_id]["messages"]
    shown = passages_in(user["content"])
    number = {text: n for n, text in shown.items()}
    assert assistant == {"role": "assistant", "content":
                         f"Five carry over [{number[carry.text]}], out of ten [{number[days.text]}]"
                         f"[{number[carry.text]}]. Ghost."}
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    ordered = [next(p for p in (carry, days, answer.passages[1]) if p.text == shown[n]) for n in sorted(shown)]
    assert user["content"] == user_turn(answer.question, [fence_passage(n, p) for n, p in enumerate(ordered, 1)])


def test_the_same_store_and_seed_give_the_same_files(store, tmp_path):
    for n in range(8):
        record(store, an_answer(f"Question {n} about the {['vpn', 'wiki', 'payroll'][n % 3]} rules?", minutes=n))

    build_dataset(store, tmp_path / "a", DatasetOptions(seed=3))
    build_dataset(store, tmp_path / "b", DatasetOptions(seed=3))

    for name in ("train.jsonl", "heldout.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_split_keeps_every_question_on_its_side_as_the_store_grows(store, tmp_path):
    topics = ["vacation", "expenses", "vpn", "laptops", "parking", "payroll", "badges", "printers", "wifi", "travel"]
    for n, topic in enumerate(topics):
        record(store, an_answer(f"What are the rules for {topic}?", minutes=n))
    before = build_dataset(store, tmp_path / "one", DatasetOptions(heldout_fraction=0.5, seed=1)).manifest
    for n, topic in enumerate(topics):
        record(store, an_answer(f"Who approves {topic} requests before the deadline?", minutes=100 + n), up=3)

    after = build_dataset(store, tmp_path / "two", DatasetOptions(heldout_fraction=0.5, seed=2)).manifest

    assert before["counts"]["train"] and before["counts"]["heldout"] and after["counts"]["eligible"] == 20
    for split in ("train", "heldout"):
        assert set(before["interaction_ids"][split]) <= set(after["interaction_ids"][split])


def test_about_the_asked_fraction_of_questions_is_held_out_whatever_their_case_or_word_order():
    questions = [f"What is the policy for case {n} in region {n % 7}?" for n in range(2000)]

    heldout = [training.dataset.is_heldout(q, 0.1) for q in questions]

    assert 0.08 < sum(heldout) / len(heldout) < 0.12
    assert all(training.dataset.is_heldout(q.upper().replace("WHAT IS", "IS WHAT"), 0.1) == h
               for q, h in zip(questions, heldout))


def test_a_dry_run_writes_nothing_and_reports_what_a_build_would_write(store, tmp_path):
    record(store, an_answer("How many vacation days do I get?"))
    record(store, an_answer("How fast must on-call acknowledge a page?", "Fast [1].", (ONCALL,)), up=4)

    dry = build_dataset(store, tmp_path / "ds", write=False)

    assert not (tmp_path / "ds").exists()
    real = build_dataset(store, tmp_path / "ds")
    assert (dry.eligible, dry.train, dry.heldout, dry.excluded) == (real.eligible, real.train, real.heldout,
                                                                    real.excluded)
    assert dry.manifest["files"] == real.manifest["files"]
    assert dry.as_json() | {"written": True} == real.as_json()
    assert dry.as_json()["excluded"]["private_passage"] == 1 and dry.as_json()["path"] == str(tmp_path / "ds")


def test_the_manifest_describes_the_files_next_to_it(store, tmp_path):
    ids = [record(store, an_answer(f"What is rule {n} of the {topic} policy?", minutes=n)).interaction_id
           for n, topic in enumerate(["travel", "expenses", "security", "leave", "hiring", "equipment"])]
    record(store, an_answer("Nobody liked this answer?"), up=0)

    report = build_dataset(store, tmp_path / "ds", DatasetOptions(heldout_fraction=0.5, distractors=2))

    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(report.manifest))
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["heldout.jsonl", "manifest.json", "train.jsonl"]
    for name, split in (("train.jsonl", "train"), ("heldout.jsonl", "heldout")):
        data = (tmp_path / "ds" / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["files"][name]["examples"] == len(lines(tmp_path / "ds" / name))
        assert manifest["interaction_ids"][split] == [e["id"] for e in lines(tmp_path / "ds" / name)]
    assert sorted(manifest["interaction_ids"]["train"] + manifest["interaction_ids"]["heldout"]) == sorted(ids)
    assert manifest["counts"] == {"interactions": 7, "eligible": 6, "train": report.train, "heldout": report.heldout,
                                  "excluded": 1}
    assert manifest["excluded"]["not_endorsed"] == 1 and set(manifest["excluded"]) == set(
        training.dataset.EXCLUSION_REASONS)
    assert manifest["chat_format"]["system_prompt_sha256"] == hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()
    assert manifest["options"]["heldout_fraction"] == 0.5 and manifest["options"]["trainable_channels"] == []


def test_rebuilding_into_the_same_folder_replaces_every_file_whole(store, tmp_path):
    record(store, an_answer("How many vacation days do I get?"))
    build_dataset(store, tmp_path / "ds")
    record(store, an_answer("Where do I upload expense receipts?", minutes=1))

    report = build_dataset(store, tmp_path / "ds")

    assert report.eligible == 2 and len(examples(tmp_path / "ds")) == 2
    assert not [p for p in (tmp_path / "ds").iterdir() if p.name.startswith(".")]


def test_progress_follows_the_reading_of_the_store(store, tmp_path):
    for n in range(3):
        record(store, an_answer(f"Question {n}?", minutes=n))
    seen = []

    build_dataset(store, tmp_path, progress=lambda done, total: seen.append((done, total)), write=False)

    assert seen[-1] == (3, 3)


@pytest.mark.parametrize("options", [dict(near_duplicate_threshold=0.0), dict(heldout_fraction=1.5),
                                     dict(distractors=-1), dict(trainable_channels=frozenset({"public"}))])
def test_options_that_make_no_sense_are_refused_in_plain_words(options):
    with pytest.raises(ConfigurationError):
        DatasetOptions(**options)



def index_their_passages(data_dir, embedder, interactions) -> None:
    """Put every passage these answers were drawn from into the data dir's index, as it was shown:
    the dataset builder learns an answer only while its passages are still indexed, unchanged."""
    from bot.app import build_services
    from bot.config import load_settings
    from knowledge.access import Scope
    from knowledge.types import StoredChunk

    services = build_services(load_settings(data_dir=data_dir), embedder=embedder)
    try:
        rows: dict[str, list[StoredChunk]] = {}
        for interaction in interactions:
            for p in interaction.passages:
                chunks = rows.setdefault(p.doc_id, [])
                if any(c.chunk_id == p.chunk_id for c in chunks):
                    continue
                [vector] = embedder.encode([p.text])
                chunks.append(StoredChunk(
                    chunk_id=p.chunk_id, doc_id=p.doc_id, position=len(chunks), title=p.title, heading_path=(),
                    text=p.text, source=p.source, path=p.source, scope=Scope.from_labels(p.scope),
                    content_hash=p.doc_id, embedding_hash=p.chunk_id, vector=vector))
        services.store.upsert_documents(rows)
    finally:
        services.close()
