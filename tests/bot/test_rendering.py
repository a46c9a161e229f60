"""Answers rendered for Slack: mrkdwn, sources, buttons, and never a message over Slack's limits."""

from __future__ import annotations

from bot.answering import Answer, Citation
from bot.rendering import MAX_BLOCKS, MAX_MESSAGE_CHARS, MAX_SECTION_CHARS, VOTE_DOWN, VOTE_UP, answer_messages, to_mrkdwn


def _citation(n: int, source: str = "https://wiki.example/leave") -> Citation:
    return Citation(n=n, title=f"Leave policy <{n}>", source=source, snippet="Employees get 18 days. " * 30,
                    score=0.8, doc_id=f"d{n}", chunk_id=f"d{n}:0", scope=["public"])


def _answer(text: str, citations: int = 2) -> Answer:
    return Answer(question="how much leave?", text=text, found=True,
                  citations=tuple(_citation(n) for n in range(1, citations + 1)), generator="extractive")


def _section_texts(message) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section"]


def test_a_short_answer_is_one_message_with_sources_and_vote_buttons():
    [message] = answer_messages(_answer("You get **18 days** [1]."), interaction_id="int-1")
    texts = _section_texts(message)
    assert texts[0] == "You get *18 days* [1]."
    assert any(t.startswith("*[1]* <https://wiki.example/leave|Leave policy &lt;1&gt;>") for t in texts)
    buttons = message.blocks[-1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(VOTE_UP, "int-1"), (VOTE_DOWN, "int-1")]
    assert message.text.startswith("You get")


def test_a_source_without_a_link_shows_its_path_and_snippets_are_short():
    citation = _citation(1, source="handbook/hr/leave.md")
    answer = Answer(question="q", text="a [1]", found=True, citations=(citation,), generator="extractive")
    [message] = answer_messages(answer, interaction_id="i")
    source = [t for t in _section_texts(message) if t.startswith("*[1]*")][0]
    assert "(handbook/hr/leave.md)" in source and "<http" not in source
    assert len(source.split("\n> ", 1)[1]) <= 200


def test_a_very_long_answer_is_split_into_messages_that_each_fit():
    paragraph = "This sentence explains the leave policy in some detail. " * 40
    text = "\n\n".join(f"{paragraph} [{i % 3 + 1}]" for i in range(60))  # ~135k characters
    messages = answer_messages(_answer(text, citations=3), interaction_id="int-2")
    assert len(messages) > 1
    for message in messages:
        assert len(message.blocks) <= MAX_BLOCKS
        assert all(len(t) <= MAX_SECTION_CHARS for t in _section_texts(message))
        assert sum(len(t) for t in _section_texts(message)) <= MAX_MESSAGE_CHARS
    # Nothing lost, nothing repeated: the words of the answer come back in order.
    body = " ".join(t for m in messages for t in _section_texts(m) if not t.startswith(("*[", "*Sources*")))
    assert body.split() == text.split()
    # Sources and buttons come once, with the last message.
    assert messages[-1].blocks[-1]["type"] == "actions"
    assert sum(b["type"] == "actions" for m in messages for b in m.blocks) == 1


def test_mrkdwn_escapes_what_could_ping_or_link_and_leaves_code_alone():
    assert to_mrkdwn("<!channel> & <@U123>") == "&lt;!channel&gt; &amp; &lt;@U123&gt;"
    assert to_mrkdwn("run `a < b` then\n```\n**x**\n```") == "run `a &lt; b` then\n```\n**x**\n```"
    assert to_mrkdwn("~~old~~ and __new__") == "~old~ and *new*"
