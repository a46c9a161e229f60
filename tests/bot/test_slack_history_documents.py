"""Slack messages as documents: what is kept, how a thread reads, where the chunker cuts."""

from __future__ import annotations

import re

from bot.slack_history.documents import (
    DocumentOptions,
    group_documents,
    slack_doc_id,
    thread_document,
)
from bot.slack_history.reader import Channel, Identity
from knowledge.access import Scope
from knowledge.chunking import ChunkingOptions, chunk_document

ME = Identity(workspace_url="https://acme.slack.com/", user_id="U0LOREBOT", bot_id="B0LOREBOT")
ENG = Channel(id="C0ENG", name="eng", kind="public")
SCOPE = Scope.channels(["C0ENG"])
OPTIONS = DocumentOptions(chunking=ChunkingOptions(), window_s=30 * 60)
T0 = 1_772_619_300  # 2026-03-04 10:15 UTC


def message(n: int, text: str, *, user: str = "U0ANA", minutes: float = 0, thread: int | None = None, **extra) -> dict:
    ts = f"{T0 + int(minutes * 60)}.{n:06d}"
    m = {"type": "message", "user": user, "text": text, "ts": ts, **extra}
    if thread is not None:
        m["thread_ts"] = f"{T0}.{thread:06d}"
    return m


def test_a_thread_is_one_document_with_authors_times_and_the_permalink() -> None:
    thread = [message(1, "How do we rotate the staging TLS certificate?", thread=1, reply_count=2),
              message(2, "Run `make rotate-certs` from the ops repo, then <@U0BEN> restarts nginx.", user="U0CAT",
                      minutes=3, thread=1),
              message(3, "Done, see <https://wiki.example/certs|the runbook>.", user="U0BEN", minutes=9, thread=1)]

    doc = thread_document(ENG, thread, me=ME, scope=SCOPE, options=OPTIONS)

    assert doc.doc_id == slack_doc_id("C0ENG", f"{T0}.000001") and doc.path == f"slack://C0ENG/{T0}.000001"
    assert doc.source == f"https://acme.slack.com/archives/C0ENG/p{T0}000001"
    assert doc.title == "#eng · 2026-03-04 · How do we rotate the staging TLS certificate?"
    assert doc.text.split("\n\n") == [
        "U0ANA (2026-03-04 10:15 UTC): How do we rotate the staging TLS certificate?",
        "U0CAT (2026-03-04 10:18 UTC): Run `make rotate-certs` from the ops repo, then @U0BEN restarts nginx.",
        "U0BEN (2026-03-04 10:24 UTC): Done, see the runbook.",
    ]
    assert "<@" not in doc.text and doc.scope == SCOPE


def test_lorebot_other_bots_slack_notices_and_questions_to_lorebot_are_left_out() -> None:
    thread = [message(1, "<@U0LOREBOT> how long is the deploy freeze?", thread=1, reply_count=6),
              message(2, "The freeze lasts 48 hours [1]", user="U0LOREBOT", bot_id="B0LOREBOT", thread=1),
              message(3, "build #812 passed", user="", bot_id="B0CI", subtype="bot_message", thread=1),
              message(4, "has joined the channel", subtype="channel_join", thread=1),
              message(5, "set the channel topic: deploys", subtype="channel_topic", thread=1),
              message(6, "This message was deleted.", subtype="tombstone", hidden=True, thread=1),
              message(7, "It is 48 hours, starting Friday noon.", user="U0DEV", thread=1)]

    doc = thread_document(ENG, thread, me=ME, scope=SCOPE, options=OPTIONS)

    assert doc.text == "U0DEV (2026-03-04 10:15 UTC): It is 48 hours, starting Friday noon."
    assert thread_document(ENG, thread[:6], me=ME, scope=SCOPE, options=OPTIONS) is None


def test_a_long_thread_is_chunked_between_messages() -> None:
    lines = [f"Step {n}: the deploy checklist item number {n} says to verify the canary metrics and the error "
             f"budget before promoting build {n} to the next region." for n in range(12)]
    thread = [message(n + 1, text, minutes=n, thread=1) for n, text in enumerate(lines)]
    doc = thread_document(ENG, thread, me=ME, scope=SCOPE, options=OPTIONS)

    chunks = chunk_document(doc, OPTIONS.chunking)

    assert len(chunks) > 3
    paragraphs = doc.text.split("\n\n")
    for chunk in chunks:
        body = chunk.text.split("\n\n")
        # A chunk may open with the end of the message before it (the chunker's overlap); every
        # other paragraph is one message, whole.
        assert all(p in paragraphs for p in body[1:]), chunk.text
        assert body[0] in paragraphs or any(p.endswith(body[0]) for p in paragraphs)
    whole = {p for chunk in chunks for p in chunk.text.split("\n\n")}
    assert set(paragraphs) <= whole


def test_messages_outside_threads_are_grouped_by_time_window() -> None:
    standalone = [message(1, "Coffee machine on 3 is broken", minutes=0),
                  message(2, "facilities ticket filed", user="U0BEN", minutes=20),
                  message(3, "has joined the channel", subtype="channel_join", minutes=55),
                  message(4, "Retro moved to Thursday", minutes=80)]

    docs = group_documents(ENG, standalone, me=ME, scope=SCOPE, options=OPTIONS)

    assert [re.findall(r"^U0\w+", d.text, re.MULTILINE) for d in docs] == [["U0ANA", "U0BEN"], ["U0ANA"]]
    assert [d.path for d in docs] == [f"slack://C0ENG/{T0}.000001", f"slack://C0ENG/{T0 + 4800}.000004"]
    assert docs[0].title == "#eng · 2026-03-04 10:15 UTC"


def test_an_edit_keeps_the_document_and_changes_its_hash() -> None:
    before = thread_document(ENG, [message(1, "Freeze starts Friday", thread=1)], me=ME, scope=SCOPE, options=OPTIONS)
    after = thread_document(ENG, [message(1, "Freeze starts Thursday", thread=1, edited={"user": "U0ANA"})],
                            me=ME, scope=SCOPE, options=OPTIONS)
    assert before.doc_id == after.doc_id and before.content_hash != after.content_hash
