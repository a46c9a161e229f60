"""``lorebot documents`` (an admin's view: every document) shows Slack history's channel, day,
authors by name and permalink, against the fake Slack Web API through a real WebClient."""

from __future__ import annotations

import json

from tests.bot.test_slack_history_cli import documents, ingest, lorebot, slack  # noqa: F401 (fixtures)


def test_documents_show_slack_threads_with_channel_day_authors_and_permalink(slack, lorebot) -> None:  # noqa: F811
    slack.add_channel("C0SALES", name="sales")
    parent = slack.add_message("C0ENG", user="U0ANA", text="How do we rotate the TLS certificates?")
    slack.add_message("C0ENG", user="U0BEN", thread_ts=parent, text="Run rotate-certs, then restart the edge.")
    slack.add_message("C0SALES", user="U0CAT", text="Renewal call moved to Thursday")
    ingest(lorebot, "--channel", "C0ENG", "--channel", "C0SALES")

    docs = {d["slack"]["channel"]: d for d in documents(lorebot)}  # the admin sees every channel's
    eng = docs["eng"]["slack"]
    assert eng["channel_id"] == "C0ENG" and eng["date"] == "2023-11-14"
    assert eng["authors"] == [{"id": "U0ANA", "name": "u0ana"}, {"id": "U0BEN", "name": "u0ben"}]
    assert eng["permalink"] == f"https://lorebot-test.slack.com/archives/C0ENG/p{parent.replace('.', '')}"
    assert docs["sales"]["slack"]["authors"] == [{"id": "U0CAT", "name": "u0cat"}]
    assert [d["slack"]["channel"] for d in documents(lorebot, "C0SALES")] == ["sales"]

    table = " ".join(lorebot("documents").stdout.split())
    assert "#eng" in table and "u0ana," in table and "u0ben" in table  # (the table wraps at 80 columns)


def test_documents_show_bare_ids_when_slack_refuses_users_info(slack, lorebot) -> None:  # noqa: F811
    slack.add_message("C0ENG", user="U0ANA", text="Standup moves to 10:30")
    ingest(lorebot, "--channel", "C0ENG")
    slack.fail("users.info", error="missing_scope", times=5)
    result = lorebot("documents", "--json")
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)["documents"]
    assert doc["slack"]["authors"] == [{"id": "U0ANA", "name": "U0ANA"}]
