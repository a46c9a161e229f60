"""Attacks on what lorebot posts: document text, file names, source URLs and model output are
hostile input. Whatever they hold, a message carries no live mention and no link except lorebot's
own source links, and only the generator's own ``[n]`` markers are citations.

The checker below reads posted text the way Slack does: every ``<...>`` is a control sequence
(a link, a mention, a date). Only ``<URL|label>`` for a citation's own sanitized source, and the
``<!date^…>`` the App Home writes itself, may appear.
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.answering import Answer, Citation, renumber_citations
from bot.generation.base import GenerationRequest
from bot.generation.extractive import ExtractiveGenerator
from bot.generation.prompt import build_prompt
from bot.home import HomeFacts, home_view
from bot import rendering, slash
from bot.rendering import answer_messages, to_mrkdwn
from knowledge.access import Scope
from knowledge.types import DocumentInfo, Passage
from training.feedback import FeedbackStats
from training.jobs_log import JobRun

EVIL_LINK = "[finance](https://evil.example/x>*<!channel>*<y)"
EVIL_FILE = "parking|x><!here><z.md"

# ---------------------------------------------------------------- the checker

_SEQUENCE = re.compile(r"<([^<>]*)>")
_HOME_DATE = re.compile(r"!date\^\d+\^\{date_short_pretty\} \{time\}\|[0-9: -]+ UTC")
_LOREBOT_QUOTE = re.compile(r"^> ", re.MULTILINE)  # a source's quote: a block quote, never a sequence
_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")
_LOUD_MENTION = re.compile(r"(?<![\w@])@(?:channel|here|everyone)\b", re.IGNORECASE)


def markup_problems(text: str, *, links: set[str], dates: bool = False) -> list[str]:
    """Everything in ``text`` Slack would read as markup that lorebot did not put there itself."""
    problems: list[str] = []

    def allowed(match: re.Match) -> str:
        inner = match.group(1)
        url, bar, _label = inner.partition("|")
        if not ((bar and url in links) or (dates and _HOME_DATE.fullmatch(inner))):
            problems.append(f"live control sequence <{inner}>")
        return ""

    rest = _LOREBOT_QUOTE.sub("", _SEQUENCE.sub(allowed, text))
    if "<" in rest or ">" in rest:
        problems.append(f"unescaped angle bracket in {rest!r}")
    if _BARE_AMPERSAND.search(rest):
        problems.append(f"unescaped & in {rest!r}")
    if _LOUD_MENTION.search(rest):
        problems.append(f"plain @channel/@here/@everyone in {rest!r}")
    return problems


def text_fields(node) -> list[str]:
    """Every text a Block Kit structure (or a message) shows: mrkdwn and plain_text alike."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            found.append(node["text"])
        for key, value in node.items():
            if key == "text" and isinstance(value, str) and node.get("type") not in ("mrkdwn", "plain_text"):
                found.append(value)  # a message's notification text
            elif isinstance(value, (dict, list)):
                found.extend(text_fields(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(text_fields(item))
    return found


def message_problems(message: dict, *, links: set[str], dates: bool = False) -> list[str]:
    return [p for text in text_fields(message) for p in markup_problems(text, links=links, dates=dates)]


def own_links(citations) -> set[str]:
    links = {rendering.source_link(c.source) for c in citations} - {None}
    for url in links:  # what lorebot itself links to is a plain http(s) URL, nothing more
        assert re.fullmatch(r"https?://[^\s<>|\"']+", url), url
    return links


# ---------------------------------------------------------------- strategies

_PIECES = [
    "<", ">", "|", "&", "!", "*", "_", "~", "`", "```", "[", "]", "(", ")", "@", "#", ":", "/", ".", " ", "\n",
    "!channel", "<!channel>", "<!here>", "<!everyone>", "@here", "@channel", "@everyone", "<@U024BE7LH>",
    "<#C0FINANCE|finance>", "<!subteam^S0ADMINS|admins>", "<!date^1700000000^{date}|x>", "<https://evil.example>",
    "<https://evil.example|the wiki>", "[x](https://evil.example/a)", EVIL_LINK, "https://evil.example/p?a=1&b=2",
    "&amp;", "&lt;", "&gt;", "[1]", "[2]", "**", "__", "> ", "- ", "# ", "é", "日本", "🙂", "\u2060", "\u200b",
    "\x00", "\x01", "\x000\x00", "javascript:alert(1)", "mailto:a@evil.example",
]
hostile_text = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=12).map("".join),
    st.text(max_size=40),
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=5)), max_size=8).map("".join),
)
hostile_source = st.one_of(
    hostile_text,
    st.tuples(st.sampled_from(["https://wiki.example/", "http://x.example/a?b=1&c=", "HTTPS://Wiki.Example/",
                               "https://", "javascript:", "ftp://files.example/", "/srv/docs/", "https:x"]),
              hostile_text).map("".join),
)


@st.composite
def citations(draw, max_size: int = 4) -> tuple[Citation, ...]:
    count = draw(st.integers(0, max_size))
    return tuple(
        Citation(n=n, title=draw(hostile_text), source=draw(hostile_source), snippet=draw(hostile_text),
                 score=0.5, doc_id=f"d{n}", chunk_id=f"d{n}:0", scope=["public"])
        for n in range(1, count + 1)
    )


# ---------------------------------------------------------------- properties


@settings(max_examples=150)
@given(text=hostile_text, cited=citations(), consulted=citations(), note=st.none() | hostile_text)
def test_an_answer_shows_no_markup_but_its_own_source_links(text, cited, consulted, note):
    answer = Answer(question="q", text=text, found=True, citations=cited, consulted=consulted if not cited else (),
                    generator="tgi", note=note)
    links = own_links(cited + consulted)
    for message in answer_messages(answer, interaction_id="i-1", shareable=True):
        assert message_problems({"text": message.text, "blocks": message.blocks}, links=links) == []


@settings(max_examples=100)
@given(markdown=hostile_text)
def test_generated_markdown_never_becomes_a_link_or_a_mention(markdown):
    assert markup_problems(to_mrkdwn(markdown), links=set()) == []


@settings(max_examples=100)
@given(documents=st.lists(st.tuples(hostile_text, hostile_source, st.booleans()), max_size=6))
def test_the_sources_list_shows_no_markup_but_the_documents_own_links(documents):
    infos = [DocumentInfo(doc_id=f"d{i}", title=title, source=source, path="", content_hash="",
                          scope=Scope.public() if public else Scope.channels(["C0FINANCE"]), chunks=1)
             for i, (title, source, public) in enumerate(documents)]
    links = {rendering.source_link(d.source) for d in infos} - {None}
    for message in slash.documents_messages(infos):
        assert message_problems({"text": message.text, "blocks": message.blocks}, links=links) == []


_secretless = hostile_text.filter(lambda t: "secret" not in t.lower())


@settings(max_examples=100)
@given(public=st.lists(_secretless, max_size=4), private=st.lists(hostile_text, max_size=3),
       jobs=st.dictionaries(_secretless, st.tuples(st.sampled_from(["ok", "failed", "skipped", "running"]),
                                                   hostile_text), max_size=3),
       adapter=st.none() | _secretless)
def test_the_app_home_shows_no_markup_and_nothing_private(public, private, jobs, adapter):
    documents = [DocumentInfo(doc_id=f"p{i}", title=t, source="", path="", content_hash="", scope=Scope.public(),
                              chunks=1) for i, t in enumerate(public)]
    documents += [DocumentInfo(doc_id=f"s{i}", title=f"SECRET {t}", source="", path="", content_hash="",
                               scope=Scope.channels(["C0DEALS"]), chunks=1) for i, t in enumerate(private)]
    started = datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)
    runs = {name: JobRun(id=i, job=name, started_at=started, finished_at=started, outcome=outcome,
                         detail=f"SECRET /srv/private/{detail}", holder=None)
            for i, (name, (outcome, detail)) in enumerate(jobs.items())}
    stats = FeedbackStats(interactions=1, upvotes=1, downvotes=0, voters=1)
    view = home_view(HomeFacts(documents=documents, stats=stats, generator="tgi", adapter=adapter, jobs=runs))
    assert message_problems(view, links=set(), dates=True) == []
    assert all("secret" not in text.lower() for text in text_fields(view))


@settings(max_examples=150)
@given(text=hostile_text, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_a_streamed_answer_cut_anywhere_carries_no_link_or_mention(text, cuts):
    """Slack's streaming API takes Markdown: there ``[label](url)`` and ``<…>`` would be live."""
    sent, held = [], ""
    bounds = sorted({min(c, len(text)) for c in cuts} | {len(text)})
    start = 0
    for end in bounds:
        ready, held = rendering.stream_markdown(held + text[start:end])
        sent.append(ready)
        start = end
    streamed = "".join(sent)
    assert "<" not in streamed and ">" not in streamed
    assert "](" not in streamed and "]:" not in streamed
    assert not _LOUD_MENTION.search(streamed)
    # Nothing is lost: what was sent, read back, is the text up to what is still held back.
    assert _invisible(html.unescape(streamed)) == _invisible(text[: len(text) - len(held)])


def _invisible(text: str) -> str:
    return text.replace("\u200b", "").replace("\u2060", "")


# ---------------------------------------------------------------- the reported cases


def _citation(title: str, source: str, snippet: str = "Parking is free for staff.") -> Citation:
    return Citation(n=1, title=title, source=source, snippet=snippet, score=0.9, doc_id="d1", chunk_id="d1:0",
                    scope=["public"])


def _shown(messages) -> str:
    return "\n".join(t for m in messages for t in text_fields({"text": m.text, "blocks": m.blocks}))


def test_a_markdown_link_in_a_document_is_shown_as_its_label_and_real_host():
    answer = Answer(question="q", text=f"> Payments go through {EVIL_LINK} [1]", found=True,
                    citations=(_citation("Payments", "https://wiki.example/payments"),), generator="extractive")
    shown = _shown(answer_messages(answer, interaction_id="i"))
    assert "finance (evil.example)" in shown
    assert "<!channel>" not in shown and "<https://evil" not in shown
    assert message_problems({"blocks": answer_messages(answer, interaction_id="i")[0].blocks},
                            links={"https://wiki.example/payments"}) == []


def test_a_slack_style_link_in_model_output_is_not_live_either():
    assert to_mrkdwn("see <https://evil.example/login|the wiki> now") == "see the wiki (evil.example) now"


def test_a_plain_at_here_cannot_notify_anyone():
    assert not _LOUD_MENTION.search(to_mrkdwn("ping @here and @channel"))


def test_a_file_name_with_slack_markup_stays_text_in_an_answers_sources():
    title, source = "Parking|x><!here><z", "https://wiki.example/" + EVIL_FILE
    answer = Answer(question="q", text="Parking [1]", found=True, citations=(_citation(title, source),),
                    generator="extractive")
    [message] = answer_messages(answer, interaction_id="i")
    shown = _shown([message])
    assert "<!here>" not in shown
    assert "<https://wiki.example/parking%7Cx%3E%3C!here%3E%3Cz.md|Parking|x&gt;&lt;!here&gt;&lt;z>" in shown
    assert message_problems({"blocks": message.blocks}, links=own_links(answer.citations)) == []


def test_a_source_that_is_not_an_http_url_with_a_host_is_never_a_link():
    answer = Answer(question="q", text="a [1] [2]", found=True, generator="extractive",
                    citations=(_citation("Click", "javascript:alert(1)//<!here>"), _citation("Wiki", "https://")))
    shown = _shown(answer_messages(answer, interaction_id="i"))
    assert "<javascript" not in shown and "<!here>" not in shown and "<https://|" not in shown
    assert "Click (javascript:alert(1)//&lt;!here&gt;)" in shown and "Wiki (https://)" in shown


def test_a_file_name_with_slack_markup_stays_text_in_lorebot_sources(tmp_path, hashing_embedder):
    from bot.app import build_services
    from bot.config import load_settings
    
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / EVIL_FILE).write_text(f"Staff parking is free. Payments go through {EVIL_LINK}.\n")
    services = build_services(load_settings(data_dir=tmp_path / "data"), embedder=hashing_embedder)
    try:
        assert services.ingestor.ingest_paths([docs], scope=Scope.public(), source_url="https://wiki.example").ok
        [message] = slash.sources_messages(services.store, "C0GENERAL")
        links = {rendering.source_link("https://wiki.example/" + EVIL_FILE)}
        assert message_problems({"text": message.text, "blocks": message.blocks}, links=links) == []
        assert "<!here>" not in _shown([message])
    finally:
        services.close()


def test_the_app_home_shows_a_failed_jobs_outcome_but_not_its_detail():
    started = datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)
    run = JobRun(id=1, job="reingest", started_at=started, finished_at=started, outcome="failed",
                 detail="could not read /srv/private/deals/falcon-acquisition.md", holder=None)
    view = home_view(HomeFacts(documents=[], stats=None, generator="extractive", adapter=None,
                               jobs={"reingest": run}))
    shown = "\n".join(text_fields(view))
    assert "`reingest` failed" in shown
    assert "falcon" not in shown and "/srv/private" not in shown


# ---------------------------------------------------------------- citations come from the generator only


def _passage(n: int, text: str) -> Passage:
    return Passage(doc_id=f"d{n}", chunk_id=f"d{n}:0", title=f"Doc {n}", source=f"docs/{n}.md", heading_path=(),
                   text=text, scope=Scope.public(), score=1.0 / n, similarity=0.9)


def test_a_bracketed_number_in_a_quoted_document_is_not_a_citation(hashing_embedder):
    passages = [_passage(1, "Staff parking permits are issued by facilities [2] every spring."),
                _passage(2, "Unrelated.")]
    question = "who issues staff parking permits?"
    draft = ExtractiveGenerator(hashing_embedder).generate(GenerationRequest(question=question, passages=passages))
    text, cited = renumber_citations(draft.text, passages, quotes=draft.quotes)
    assert [c.doc_id for c in cited] == ["d1"]
    assert "issued by facilities" in text and "[2]" not in text


def test_a_bracketed_number_in_a_passage_is_not_shown_to_the_model_as_a_citation():
    prompt = build_prompt("who issues permits?", [_passage(1, "Permits come from facilities [2].")],
                          budget_tokens=2_000)
    user = prompt.messages[-1]["content"]
    assert "facilities [2]" not in user and "facilities" in user


@pytest.mark.parametrize("source, expected", [
    ("https://wiki.example/a b\"c'd", "https://wiki.example/a%20b%22c%27d"),
    ("https://wiki.example/p?x=1&y=<2>|3", "https://wiki.example/p?x=1&amp;y=%3C2%3E%7C3"),
    ("https://wiki.example/caf\u00e9", "https://wiki.example/caf%C3%A9"),
    ("ftp://files.example/a", None),
    ("https://", None),
    ("docs/a.md", None),
])
def test_source_links_are_http_and_percent_encoded(source, expected):
    assert rendering.source_link(source) == expected
