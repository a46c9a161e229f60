"""The feedback store: answers are kept as shown, and every person's vote counts once, the latest one."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from knowledge.errors import DatabaseError
from training.database import open_engine
from training.feedback import (
    DOWN,
    UP,
    FeedbackStats,
    FeedbackStore,
    Interaction,
    UsedPassage,
    new_interaction_id,
)

EXPENSES = UsedPassage(
    doc_id="handbook/expenses.md",
    chunk_id="handbook/expenses.md#2",
    title="Expenses",
    source="https://wiki.example.com/expenses",
    text="Receipts over 25 EUR must be uploaded within 30 days.",
    scope=("public",),
    score=0.61,
    cited_as=1,
    quote="Receipts over 25 EUR must be uploaded within 30 days.",
)
ONCALL = UsedPassage(
    doc_id="eng/oncall.md",
    chunk_id="eng/oncall.md#0",
    title="On-call",
    source="eng/oncall.md",
    text="The on-call engineer acknowledges pages within 15 minutes.",
    scope=("C0ENGINEER", "C0SRE"),
    score=0.48,
)


def an_interaction(**changes) -> Interaction:
    interaction = Interaction(
        interaction_id=new_interaction_id(),
        channel_id="C0GENERAL",
        user_id="U0ASKER",
        surface="mention",
        asked="how long do I have for receipts?",
        question="How long do I have to upload expense receipts?",
        answer="Within 30 days [1].",
        found=True,
        generator="extractive",
        passages=(EXPENSES, ONCALL),
        team_id="T0TEAM",
        thread_ts="1700000000.000100",
        timings_ms={"retrieve": 12.5, "generate": 80.0},
    )
    return replace(interaction, **changes)


@pytest.fixture
def store(open_database) -> FeedbackStore:
    return FeedbackStore(open_database())


@pytest.fixture
def answer(store) -> Interaction:
    interaction = an_interaction()
    store.record_interaction(interaction)
    return interaction


def test_an_answer_comes_back_exactly_as_recorded_with_its_passages(store):
    interaction = an_interaction(adapter="lorebot-v3")
    store.record_interaction(interaction)

    stored = store.get_interaction(interaction.interaction_id)

    assert stored == interaction
    assert stored.passages[0].cited_as == 1 and stored.passages[1].cited_as is None
    assert stored.passages[1].text == ONCALL.text
    assert stored.passages[1].scope == ("C0ENGINEER", "C0SRE")
    assert stored.created_at.tzinfo is not None
    assert store.get_interaction(new_interaction_id()) is None


def test_passages_stored_by_an_older_or_newer_version_still_read_back():
    stored = {"doc_id": "d", "chunk_id": "d#0", "title": "T", "source": "s", "text": "x",
              "scope": ["public"], "score": 0.5, "added_later": True}

    assert UsedPassage.from_json(stored) == UsedPassage("d", "d#0", "T", "s", "x", ("public",), 0.5)


def test_recording_the_same_answer_twice_keeps_one(store, answer):
    store.record_interaction(answer)

    assert store.stats().interactions == 1


def test_a_reaction_on_the_answer_message_leads_back_to_the_answer(store, answer):
    store.link_message(answer.interaction_id, channel_id="C0GENERAL", ts="1700000001.000200")
    store.link_message(answer.interaction_id, channel_id="C0GENERAL", ts="1700000001.000200")

    assert store.interaction_for_message("C0GENERAL", "1700000001.000200") == answer.interaction_id
    assert store.interaction_for_message("C0GENERAL", "1700000009.000900") is None
    assert store.interaction_for_message("C0OTHER", "1700000001.000200") is None


def test_a_message_cannot_be_linked_to_an_answer_never_recorded(store):
    with pytest.raises(ValueError, match="no interaction"):
        store.link_message(new_interaction_id(), channel_id="C0GENERAL", ts="1700000001.000200")


def test_the_bot_knows_the_threads_it_has_answered_in(store, answer):
    assert store.has_answered_in_thread("C0GENERAL", "1700000000.000100")
    assert not store.has_answered_in_thread("C0GENERAL", "1700000555.000100")
    assert not store.has_answered_in_thread("C0OTHER", "1700000000.000100")


def test_a_person_counts_once_however_often_they_vote(store, answer):
    assert store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)
    assert store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="button", at=11.0)
    assert store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=11.0)
    store.cast_vote(answer.interaction_id, user_id="U2", value=UP, via="button", at=12.0)

    assert store.stats() == FeedbackStats(interactions=1, upvotes=2, downvotes=0, voters=2)


def test_the_latest_vote_wins(store, answer):
    store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)
    store.cast_vote(answer.interaction_id, user_id="U1", value=DOWN, via="button", at=20.0)

    stats = store.stats()
    assert (stats.upvotes, stats.downvotes) == (0, 1)


def test_an_older_vote_arriving_late_does_not_undo_a_newer_one(store, answer):
    store.cast_vote(answer.interaction_id, user_id="U1", value=DOWN, via="button", at=20.0)

    assert not store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)
    stats = store.stats()
    assert (stats.upvotes, stats.downvotes) == (0, 1)


def test_removing_a_reaction_takes_the_vote_back(store, answer):
    store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)

    assert store.retract_vote(answer.interaction_id, user_id="U1", value=UP, at=15.0)
    assert store.stats() == FeedbackStats(interactions=1, upvotes=0, downvotes=0, voters=0)
    assert not store.retract_vote(answer.interaction_id, user_id="U1", value=UP, at=16.0)


def test_removing_a_thumbs_up_leaves_a_later_thumbs_down_click_alone(store, answer):
    store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)
    store.cast_vote(answer.interaction_id, user_id="U1", value=DOWN, via="button", at=20.0)

    assert not store.retract_vote(answer.interaction_id, user_id="U1", value=UP, at=30.0)
    assert store.stats().downvotes == 1


def test_a_removal_older_than_the_vote_does_not_take_it_back(store, answer):
    store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=20.0)

    assert not store.retract_vote(answer.interaction_id, user_id="U1", value=UP, at=10.0)
    assert store.stats().upvotes == 1


def test_votes_on_an_unknown_answer_are_ignored(store, answer):
    unknown = new_interaction_id()

    assert not store.cast_vote(unknown, user_id="U1", value=UP, via="reaction", at=10.0)
    assert not store.retract_vote(unknown, user_id="U1", value=UP, at=11.0)
    assert store.stats() == FeedbackStats(interactions=1, upvotes=0, downvotes=0, voters=0)


@pytest.mark.parametrize(("value", "via"), [(0, "reaction"), (2, "button"), (UP, "emoji")])
def test_a_vote_must_be_up_or_down_by_reaction_or_button(store, answer, value, via):
    with pytest.raises(ValueError):
        store.cast_vote(answer.interaction_id, user_id="U1", value=value, via=via, at=10.0)
    assert store.stats().voters == 0


def test_stats_count_answers_votes_and_voters(store):
    first, second = an_interaction(), an_interaction(found=False, passages=())
    for interaction in (first, second):
        store.record_interaction(interaction)
    store.cast_vote(first.interaction_id, user_id="U1", value=UP, via="reaction", at=1.0)
    store.cast_vote(second.interaction_id, user_id="U1", value=DOWN, via="button", at=2.0)
    store.cast_vote(second.interaction_id, user_id="U2", value=DOWN, via="reaction", at=3.0)

    stats = store.stats()

    assert stats == FeedbackStats(interactions=2, upvotes=1, downvotes=2, voters=2)
    assert stats.as_json() == {"interactions": 2, "upvotes": 1, "downvotes": 2, "voters": 2}


def test_export_gives_one_json_line_per_answer_oldest_first_with_its_votes(store):
    now = datetime.now(timezone.utc)
    newer = an_interaction(created_at=now)
    older = an_interaction(created_at=now - timedelta(hours=1), adapter="lorebot-v2")
    for interaction in (newer, older):
        store.record_interaction(interaction)
    store.cast_vote(older.interaction_id, user_id="U2", value=DOWN, via="button", at=20.0)
    store.cast_vote(older.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)

    lines = [json.loads(json.dumps(record)) for record in store.export()]

    assert [line["interaction_id"] for line in lines] == [older.interaction_id, newer.interaction_id]
    assert lines[0]["votes"] == [
        {"user_id": "U1", "value": UP, "via": "reaction", "at": 10.0},
        {"user_id": "U2", "value": DOWN, "via": "button", "at": 20.0},
    ]
    assert lines[1]["votes"] == []
    assert lines[0]["adapter"] == "lorebot-v2"
    assert lines[0]["passages"][1] == {
        "doc_id": "eng/oncall.md",
        "chunk_id": "eng/oncall.md#0",
        "title": "On-call",
        "source": "eng/oncall.md",
        "text": ONCALL.text,
        "scope": ["C0ENGINEER", "C0SRE"],
        "score": 0.48,
        "cited_as": None,
        "quote": None,
    }
    assert lines[0]["passages"][0]["cited_as"] == 1
    assert datetime.fromisoformat(lines[0]["created_at"]) == older.created_at
    assert lines[1]["question"] == newer.question and lines[1]["timings_ms"] == newer.timings_ms


def test_another_replica_or_a_restart_sees_the_same_feedback(open_database, store, answer):
    store.link_message(answer.interaction_id, channel_id="C0GENERAL", ts="1700000001.000200")
    store.cast_vote(answer.interaction_id, user_id="U1", value=UP, via="reaction", at=10.0)

    replica = FeedbackStore(open_database())

    assert replica.get_interaction(answer.interaction_id) == answer
    assert replica.interaction_for_message("C0GENERAL", "1700000001.000200") == answer.interaction_id
    assert replica.stats() == store.stats()
    assert not replica.cast_vote(answer.interaction_id, user_id="U1", value=DOWN, via="button", at=5.0)


def test_one_person_voting_from_many_threads_at_once_leaves_their_latest_vote(open_database, store, answer):
    replica = FeedbackStore(open_database())
    start = threading.Barrier(8)
    errors = []

    def vote(n: int) -> None:
        target = store if n % 2 else replica
        start.wait()
        try:
            for at in range(n * 5, n * 5 + 5):
                value = UP if at % 2 else DOWN
                target.cast_vote(answer.interaction_id, user_id="U1", value=value, via="button", at=float(at))
        except Exception as e:  # collected so a failure in a thread fails the test
            errors.append(e)

    threads = [threading.Thread(target=vote, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert store.stats().voters == 1
    (record,) = store.export()
    assert record["votes"] == [{"user_id": "U1", "value": UP, "via": "button", "at": 39.0}]


def test_replicas_starting_together_all_come_up(database_url):
    start = threading.Barrier(6)
    engines, errors = [], []

    def boot() -> None:
        engine = open_engine(database_url)
        engines.append(engine)
        start.wait()
        try:
            FeedbackStore(engine)
        except Exception as e:  # collected so a failure in a thread fails the test
            errors.append(e)

    threads = [threading.Thread(target=boot) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert FeedbackStore(engines[0]).stats().interactions == 0
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_an_unreachable_postgresql_is_a_clear_error_without_the_password(scheme):
    engine = open_engine(f"{scheme}://lorebot:s3cret-pw@127.0.0.1:1/lorebot")
    try:
        with pytest.raises(DatabaseError) as raised:
            FeedbackStore(engine)
    finally:
        engine.dispose()

    message = str(raised.value)
    assert "unreachable" in message and "127.0.0.1:1" in message
    assert "s3cret-pw" not in message
    assert "\n" not in message
