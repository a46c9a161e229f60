"""What is said in a conversation enters training data only if anyone in the workspace could read it:
the question must come from a public, unshared channel (or one an admin listed as trainable), and
thread context written by others enters only from a public channel.

Issue 19, repro 1: a question with confidential words asked in a private channel about a public
document, voted 👍, used to land in train.jsonl because only the passages' scopes were checked.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, insert
from typer.testing import CliRunner

from tests.training.test_dataset import a_passage, an_answer, every_byte, examples, index_their_passages, record
from training.database import default_database_url, open_engine
from training.dataset import EXCLUSION_REASONS, DatasetOptions, build_dataset
from training.feedback import CONVERSATION_KINDS, FeedbackStore, Interaction, metadata

CONFIDENTIAL = "Confidential: the Bluebird layoffs hit 30 people next month."
ASKED = "when is the office closed for the holidays?"
SECRET_WORDS = ("Bluebird", "layoffs")


def asked_in(kind: str | None, *, channel: str = "C0GENERAL", question: str = f"{CONFIDENTIAL} {ASKED}",
             asked: str | None = None, surface: str = "mention", minutes: int = 0) -> Interaction:
    """A 👍-worthy answer from a public document, asked in a conversation of ``kind``."""
    passages = (a_passage("handbook/office.md#0", "The office closes on public holidays.", cited_as=1),
                a_passage("handbook/office.md#1", "Office hours are 8 to 18."))
    return an_answer(question, "The office closes on public holidays [1].", passages, minutes=minutes,
                     channel_id=channel, conversation_kind=kind, asked=question if asked is None else asked,
                     surface=surface)


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    engine = open_engine(default_database_url(tmp_path))
    yield FeedbackStore(engine)
    engine.dispose()


def test_a_question_from_a_public_channel_is_still_learned(store, tmp_path):
    interaction = record(store, asked_in("public", question=f"Office hours: {ASKED}"))
    report = build_dataset(store, tmp_path / "out")
    assert report.eligible == 1 and report.decisions[interaction.interaction_id] in ("train", "heldout")


@pytest.mark.parametrize(("kind", "channel", "reason"), [
    ("private", "G0BLUEBIRD", "private_conversation"),
    ("im", "D0ASKER", "private_conversation"),
    ("mpim", "G0MPDM", "private_conversation"),
    ("shared", "C0PARTNER", "private_conversation"),  # Slack Connect: people of another organization
    (None, "C0GENERAL", "unknown_conversation"),  # recorded before lorebot looked, or the lookup failed
])
def test_a_question_from_anywhere_but_a_public_channel_never_enters_a_dataset(store, tmp_path, kind, channel, reason):
    interaction = record(store, asked_in(kind, channel=channel), up=25)
    out = tmp_path / "out"
    report = build_dataset(store, out)
    assert report.eligible == 0
    assert report.excluded[reason] == 1 and report.decisions[interaction.interaction_id] == reason
    assert report.as_json()["excluded"][reason] == 1
    assert not any(word in every_byte(out) for word in SECRET_WORDS)


def test_an_admin_may_list_a_private_channel_as_trainable(store, tmp_path):
    interaction = record(store, asked_in("private", channel="G0HANDBOOK", question=f"Handbook: {ASKED}"))
    assert build_dataset(store, tmp_path / "unlisted", write=False).excluded["private_conversation"] == 1
    report = build_dataset(store, tmp_path / "listed", DatasetOptions(trainable_channels=frozenset({"G0HANDBOOK"})))
    assert report.decisions[interaction.interaction_id] in ("train", "heldout")


def test_listing_another_channel_does_not_open_this_one(store, tmp_path):
    record(store, asked_in("private", channel="G0BLUEBIRD"))
    report = build_dataset(store, tmp_path / "out", DatasetOptions(trainable_channels=frozenset({"G0HANDBOOK"})))
    assert report.excluded["private_conversation"] == 1 and report.eligible == 0


def test_a_follow_up_in_a_trainable_private_channel_carries_only_the_askers_own_words(store, tmp_path):
    # Someone else wrote the confidential message earlier in the thread; the follow-up folded it in.
    interaction = record(store, asked_in("private", channel="G0HANDBOOK", question=f"{CONFIDENTIAL} and on Fridays?",
                                         asked="and on Fridays?", surface="follow_up"))
    out = tmp_path / "out"
    build_dataset(store, out, DatasetOptions(trainable_channels=frozenset({"G0HANDBOOK"})))
    [example] = examples(out).values()
    assert example["id"] == interaction.interaction_id
    user_turn = example["messages"][1]["content"]
    assert "and on Fridays?" in user_turn
    assert not any(word in every_byte(out) for word in SECRET_WORDS)


def test_a_follow_up_in_a_public_channel_keeps_its_context_scrubbed(store, tmp_path):
    context = "Mail jane.doe@example.com about the vacation policy for contractors."
    record(store, asked_in("public", question=f"{context} and on Fridays?", asked="and on Fridays?",
                           surface="follow_up"))
    out = tmp_path / "out"
    build_dataset(store, out)
    [example] = examples(out).values()
    user_turn = example["messages"][1]["content"]
    assert "vacation policy for contractors" in user_turn and "<email>" in user_turn
    assert "jane.doe@example.com" not in every_byte(out)


def test_every_new_reason_is_described():
    assert {"unknown_conversation", "private_conversation"} <= set(EXCLUSION_REASONS)
    assert all(EXCLUSION_REASONS[r] for r in ("unknown_conversation", "private_conversation"))


@settings(max_examples=60)
@given(kind=st.sampled_from([*CONVERSATION_KINDS, None, "", "app_home"]), listed=st.booleans(),
       surface=st.sampled_from(["mention", "follow_up", "assistant", "slash"]),
       marker=st.from_regex(r"[A-Z][a-z]{5,9}q", fullmatch=True))
def test_thread_context_enters_a_dataset_only_from_a_public_channel(kind, listed, surface, marker):
    """Whatever the kind and the listing: an answer is learned iff it was asked in a public channel or
    a listed one, and another person's words (``marker``) reach the files only from a public channel."""
    with tempfile.TemporaryDirectory() as directory:
        engine = open_engine(default_database_url(Path(directory)))
        try:
            store = FeedbackStore(engine)
            record(store, asked_in(kind, channel="G0ROOM", question=f"{marker} said the office moves. {ASKED}",
                                   asked=ASKED, surface=surface))
            options = DatasetOptions(trainable_channels=frozenset({"G0ROOM"} if listed else ()))
            out = Path(directory) / "out"
            report = build_dataset(store, out, options)
        finally:
            engine.dispose()
        assert report.eligible == (1 if listed or kind == "public" else 0)
        assert (marker in every_byte(out)) == (kind == "public")
        if report.eligible == 0:
            assert report.excluded["unknown_conversation" if not kind and not listed else "private_conversation"] == 1


# --- The store: the kind is kept, and databases made before it existed gain the column ----------


def test_the_conversation_kind_is_stored_and_read_back(open_database):
    store = FeedbackStore(open_database())
    kinds = {}
    for kind in (*CONVERSATION_KINDS, None):
        interaction = asked_in(kind)
        store.record_interaction(interaction)
        kinds[interaction.interaction_id] = kind
    assert {i: store.get_interaction(i).conversation_kind for i in kinds} == kinds
    assert {r["interaction_id"]: r["conversation_kind"] for r in store.export()} == kinds


def _earlier_schema() -> MetaData:
    """The tables as lorebot created them before it recorded the conversation's kind."""
    earlier = MetaData()
    for table in metadata.sorted_tables:
        Table(table.name, earlier, *(c._copy() for c in table.columns if c.name != "conversation_kind"))
    return earlier


def test_a_database_from_an_earlier_version_gains_the_column_and_old_answers_are_unknown(open_database, tmp_path):
    earlier = _earlier_schema()
    engine = open_database()
    earlier.create_all(engine)
    old = asked_in("public").as_json()
    del old["conversation_kind"]
    old["created_at"] = asked_in("public").created_at
    with engine.begin() as connection:
        connection.execute(insert(earlier.tables["interactions"]).values(**old))
        connection.execute(insert(earlier.tables["votes"]).values(
            interaction_id=old["interaction_id"], user_id="U0FAN", value=1, via="reaction", at=1.0))

    store = FeedbackStore(engine)  # an upgraded replica starts
    assert store.get_interaction(old["interaction_id"]).conversation_kind is None
    new = asked_in("im", question="how do I reset my password?")
    store.record_interaction(new)
    assert store.get_interaction(new.interaction_id).conversation_kind == "im"
    FeedbackStore(open_database())  # a second replica, or a restart: the column is there already
    report = build_dataset(store, tmp_path / "out", write=False)
    assert report.decisions[old["interaction_id"]] == "unknown_conversation"


# --- What `lorebot train --dry-run --json` and `lorebot feedback export` say ----------------------


def test_the_cli_counts_the_new_reasons_and_export_says_why_with_the_kind(tmp_path, monkeypatch, real_embedder):
    monkeypatch.setenv("LOREBOT_DATA_DIR", str(tmp_path))
    from bot.cli import app as cli

    engine = open_engine(default_database_url(tmp_path))
    store = FeedbackStore(engine)
    dm = record(store, asked_in("im", channel="D0ASKER"), up=3)
    old = record(store, asked_in(None, question="how many vacation days do I get?", minutes=1))
    public = record(store, asked_in("public", question="what are the office hours?", minutes=2))
    engine.dispose()
    index_their_passages(tmp_path, real_embedder, [dm, old, public])

    dry_run = CliRunner().invoke(cli, ["train", "--dry-run", "--json"])
    assert dry_run.exit_code == 0, dry_run.output
    report = json.loads(dry_run.stdout)
    assert report["excluded"]["private_conversation"] == 1 and report["excluded"]["unknown_conversation"] == 1
    assert report["eligible"] == 1

    out = tmp_path / "export.jsonl"
    assert CliRunner().invoke(cli, ["feedback", "export", "--out", str(out)]).exit_code == 0
    exported = {r["interaction_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert (exported[dm.interaction_id]["training"], exported[dm.interaction_id]["conversation_kind"]) == \
        ("private_conversation", "im")
    assert (exported[old.interaction_id]["training"], exported[old.interaction_id]["conversation_kind"]) == \
        ("unknown_conversation", None)
    assert exported[public.interaction_id]["training"] in ("train", "heldout")
