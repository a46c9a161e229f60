"""Slack sources as people see them: channel, authors by name, day and permalink, never a mention.

Names come from the fake Slack Web API's ``users.info`` through a real WebClient (the fake names
every user by its ID in lower case: U0ANA is "u0ana").
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient

from bot.answering import Answer, Citation
from bot.home import HomeFacts, home_view
from bot.people import People
from bot.rendering import answer_messages
from bot.slack_history.documents import permalink, slack_doc_id, slack_path
from bot.slack_sources import cited_slack_source, listed_slack_source
from bot.slash import documents_messages
from knowledge.access import Scope
from knowledge.types import DocumentInfo, Passage
from tests.bot.test_rendering_attacks import hostile_text, message_problems, own_links
from tests.fakes.slack_api import FakeSlackAPI

TOKEN = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"
WORKSPACE = "https://acme.slack.com/"
TS = "1772619300.000100"  # 2026-03-04 10:15 UTC
THREAD = ("U0ANA (2026-03-04 10:15 UTC): When does the deploy freeze start?\n\n"
          "U0BEN (2026-03-04 10:20 UTC): 48 hours before a public holiday, ask @U0CAT.")


@pytest.fixture
def slack(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeSlackAPI(bot_token=TOKEN) as fake:
        yield fake


@pytest.fixture
def people(slack) -> People:
    return People(WebClient(token=TOKEN, base_url=slack.url))


def slack_citation(*, channel: str = "C0ENG", ts: str = TS, title: str = "#eng · 2026-03-04 · When does the freeze start?",
                   snippet: str = "U0BEN (2026-03-04 10:20 UTC): 48 hours before a public holiday.") -> Citation:
    return Citation(n=1, title=title, source=permalink(WORKSPACE, channel, ts), snippet=snippet, score=0.9,
                    doc_id=slack_doc_id(channel, ts), chunk_id="chunk-1", scope=[channel])


def slack_answer(citation: Citation, text: str = THREAD) -> Answer:
    passage = Passage(doc_id=citation.doc_id, chunk_id=citation.chunk_id, title=citation.title, source=citation.source,
                      heading_path=(), text=text, scope=Scope.channels(list(citation.scope)), score=0.9, similarity=0.8)
    return Answer(question="when is the freeze?", text="48 hours before [1]", found=True, citations=(citation,),
                  generator="extractive", passages=(passage,))


def sources_text(messages) -> str:
    return "\n".join(b["text"]["text"] for m in messages for b in m.blocks if b.get("type") == "section")


def slack_info(channel: str = "C0ENG", ts: str = TS, *, title: str = "#eng · 2026-03-04 · When does the freeze start?",
               scope: Scope | None = None) -> DocumentInfo:
    return DocumentInfo(doc_id=slack_doc_id(channel, ts), title=title, source=permalink(WORKSPACE, channel, ts),
                        path=slack_path(channel, ts), content_hash="h", scope=scope or Scope.channels([channel]), chunks=1)


class ChunkTexts:
    """A store's one read the listings make for a Slack document: its chunks' texts."""

    def __init__(self, texts: dict[str, str]):
        self.texts = texts

    def chunks_of(self, doc_id: str):
        return [type("Chunk", (), {"text": self.texts[doc_id]})()] if doc_id in self.texts else []


def test_an_answer_cites_a_slack_thread_by_channel_authors_day_and_permalink(people, slack) -> None:
    citation = slack_citation()
    [message] = answer_messages(slack_answer(citation), interaction_id="i1", names=people)

    listed = sources_text([message])
    link = "<https://acme.slack.com/archives/C0ENG/p1772619300000100|#eng · 2026-03-04>"
    assert f"*[1]* {link} · u0ana, u0ben" in listed
    assert "> u0ben (2026-03-04 10:20 UTC): 48 hours" in listed  # the quote names its author too
    assert "<@" not in listed and "U0BEN" not in listed
    assert {c.params["user"] for c in slack.calls("users.info")} == {"U0ANA", "U0BEN"}
    assert message_problems({"blocks": message.blocks, "text": message.text}, links=own_links([citation])) == []


def test_a_web_page_linking_to_a_slack_message_is_not_a_slack_source(people) -> None:
    # The permalink's own slack:// path has another document ID: a web page quoting Slack, not Slack history.
    page = Citation(n=1, title="Runbook", source=permalink(WORKSPACE, "C0ENG", TS), snippet=THREAD, score=0.5,
                    doc_id="d0c0ffee", chunk_id="c", scope=["C0ENG"])
    assert cited_slack_source(doc_id=page.doc_id, title=page.title, source=page.source, text=THREAD) is None
    [message] = answer_messages(slack_answer(page), interaction_id="i1", names=people)
    assert "Runbook" in sources_text([message]) and "u0ana" not in sources_text([message])


def test_without_users_read_the_authors_show_as_bare_ids_and_the_source_still_shows(slack, people) -> None:
    slack.fail("users.info", error="missing_scope", times=10)
    [message] = answer_messages(slack_answer(slack_citation()), interaction_id="i1", names=people)
    listed = sources_text([message])
    assert "#eng · 2026-03-04> · U0ANA, U0BEN" in listed and "<@" not in listed


def test_names_are_looked_up_once_per_person_however_many_threads_render(slack, people) -> None:
    slack.delay("users.info", 0.2)  # every thread asks while the first lookup is under way
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(people("U0ANA"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answer_messages(slack_answer(slack_citation()), interaction_id="i1", names=people)
    assert names == ["u0ana"] * 8
    assert [c.params["user"] for c in slack.calls("users.info")] == ["U0ANA", "U0BEN"]


def test_an_unreachable_slack_shows_ids_without_asking_again_for_each_author() -> None:
    people = People(WebClient(token=TOKEN, base_url="http://127.0.0.1:9/", timeout=1))
    assert (people("U0ANA"), people("U0BEN")) == ("U0ANA", "U0BEN")


def test_sources_list_a_channels_slack_threads_with_their_authors(people) -> None:
    eng = slack_info()
    store = ChunkTexts({eng.doc_id: THREAD})
    [message] = documents_messages([eng], store=store, names=people)
    listed = sources_text([message])
    assert ("• <https://acme.slack.com/archives/C0ENG/p1772619300000100|#eng · 2026-03-04> · u0ana, u0ben: "
            "When does the freeze start?  _(this channel only)_") in listed


def test_app_home_shows_public_slack_threads_with_authors_and_no_channel_only_ones(people) -> None:
    general = slack_info("C0GENERAL", "1772619400.000200", title="#general · 2026-03-04 · Lunch is at noon",
                         scope=Scope.public())
    eng = slack_info(title="#eng · 2026-03-04 · Secret launch date")
    store = ChunkTexts({general.doc_id: "U0DAN (2026-03-04 10:16 UTC): Lunch is at noon", eng.doc_id: THREAD})
    from bot.home import public_slack_sources

    facts = HomeFacts(documents=[general, eng], stats=None, generator="extractive", adapter=None,
                      slack_sources=public_slack_sources(store, [general, eng]), names=people)
    home = "\n".join(b["text"]["text"] for b in home_view(facts)["blocks"] if b.get("type") == "section")
    assert "|#general · 2026-03-04> · u0dan: Lunch is at noon" in home
    assert "Secret launch" not in home and "#eng" not in home and "u0ana" not in home
    assert set(public_slack_sources(store, [general, eng])) == {general.doc_id}  # nobody looks up #eng's authors


def test_a_more_than_three_author_thread_names_three_and_counts_the_rest(people) -> None:
    text = "\n\n".join(f"U0P{i} (2026-03-04 10:1{i} UTC): point {i}" for i in range(5))
    source = listed_slack_source(slack_info(), ChunkTexts({slack_info().doc_id: text}))
    assert source.authors == ("U0P0", "U0P1", "U0P2", "U0P3", "U0P4")
    [message] = documents_messages([slack_info()], store=ChunkTexts({slack_info().doc_id: text}), names=people)
    assert "· u0p0, u0p1, u0p2 and 2 more:" in sources_text([message])


# ---------------------------------------------------------------- hostile channels, messages and people

user_ids = st.sampled_from(["U0ANA", "U0BEN", "W0CAT"])


@settings(max_examples=150, deadline=None)
@given(channel_name=hostile_text, words=st.lists(hostile_text, min_size=1, max_size=3), names=st.lists(hostile_text, min_size=3, max_size=3),
       excerpt=hostile_text)
def test_hostile_channel_names_messages_and_user_names_never_become_markup(channel_name, words, names, excerpt) -> None:
    named = dict(zip(["U0ANA", "U0BEN", "W0CAT"], names))
    text = "\n\n".join(f"{u} (2026-03-04 10:1{i} UTC): {w} @U0BEN" for i, (u, w) in enumerate(zip(named, words)))
    title = f"#{channel_name} · 2026-03-04 · {excerpt}"
    citation = slack_citation(title=title, snippet=text)
    info = slack_info(title=title, scope=Scope.public())
    store = ChunkTexts({info.doc_id: text})

    for message in answer_messages(slack_answer(citation, text), interaction_id="i1", names=named.get):
        assert message_problems({"blocks": message.blocks, "text": message.text}, links=own_links([citation])) == []
    for message in documents_messages([info], store=store, names=named.get):
        assert message_problems({"blocks": message.blocks, "text": message.text}, links=own_links([citation])) == []
    facts = HomeFacts(documents=[info], stats=None, generator="extractive", adapter=None,
                      slack_sources={info.doc_id: listed_slack_source(info, store)}, names=named.get)
    assert message_problems(home_view(facts), links=own_links([citation])) == []
