"""Bolt listeners: each parses its payload, acks, and hands the work to a plain function.

Answering runs on lorebot's own worker pool, never on Bolt's listener threads: a slash command
or a button must be acked within 3 seconds even while twenty questions are being answered.
Events are acked by Bolt before the listener runs; a retried event, or the same post arriving as
both ``app_mention`` and ``message``, is answered once (the event ledger, in the database).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from slack_bolt import Ack, App

from bot.dedup import EventLedger
from bot.home import HomeFacts, home_view
from bot.matchers import (
    is_direct_message,
    is_home_tab,
    is_person_writing,
    is_reply_in_thread,
    mentions_bot,
    message_key,
)
from bot.rendering import SHARE, VOTE_DOWN, VOTE_UP
from bot.replies import WORKING, Ask, ReplyDeps, answer_in_thread, begin_reply
from bot.slack_history.sync import SlackSync, message_change
from bot.slash import Command, ResponseUrl, SlashDeps, is_question, run_command, share_answer
from bot.votes import vote_by_button, vote_by_reaction

log = logging.getLogger(__name__)

ASSISTANT_GREETING = "Hi! Ask me anything about the documents your workspace shared with me; I cite every source."


@dataclass
class BotDeps:
    replies: ReplyDeps
    slash: SlashDeps
    ledger: EventLedger
    workers: Executor
    home_facts: Callable[[], HomeFacts]
    follow_up_in_threads: bool = False
    # Keeps listed channels' history current from message and channel events (None: not kept).
    slack_sync: SlackSync | None = None
    # Where history updates run: apart from the answer workers, so that a history update waiting
    # out a 429 never holds a question back (None: on the answer workers).
    history_workers: Executor | None = None

    @property
    def history_executor(self) -> Executor:
        return self.history_workers or self.workers

    @property
    def bot_user_id(self) -> str | None:
        return self.replies.bot_user_id


def register_listeners(app: App, deps: BotDeps) -> None:
    """Every event lorebot subscribes to gets a listener (an unhandled event would be answered
    404, and Slack would retry it)."""

    @app.event("app_mention")
    def on_mention(body: dict, event: dict) -> None:
        if is_person_writing(event) and first_time(deps.ledger, body, event):
            answer_later(deps, ask_from(event, body, surface="mention"))

    @app.event("message")
    def on_message(body: dict, event: dict) -> None:
        sync_history_later(deps, event)  # every message event, edits and deletions too
        if not is_person_writing(event):
            return
        if is_direct_message(event):
            surface = "assistant"
        elif deps.follow_up_in_threads and is_reply_in_thread(event) and not mentions_bot(event, deps.bot_user_id):
            if not deps.replies.feedback.has_answered_in_thread(event["channel"], event["thread_ts"]):
                return
            surface = "follow_up"
        else:
            return
        if first_time(deps.ledger, body, event):
            answer_later(deps, ask_from(event, body, surface=surface))

    @app.event("reaction_added")
    def on_reaction_added(body: dict, event: dict) -> None:
        if event.get("user") != deps.bot_user_id and first_time(deps.ledger, body, None):
            vote_by_reaction(deps.replies.feedback, event, added=True, metrics=deps.replies.metrics)

    @app.event("reaction_removed")
    def on_reaction_removed(body: dict, event: dict) -> None:
        if event.get("user") != deps.bot_user_id and first_time(deps.ledger, body, None):
            vote_by_reaction(deps.replies.feedback, event, added=False, metrics=deps.replies.metrics)

    @app.event("app_home_opened")
    def on_home_opened(event: dict) -> None:
        if is_home_tab(event):
            deps.workers.submit(publish_home, deps, event["user"])

    @app.event("assistant_thread_started")
    def on_assistant_thread_started(event: dict) -> None:
        thread = event.get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            deps.workers.submit(greet_assistant_thread, deps, thread["channel_id"], thread["thread_ts"])

    @app.event("assistant_thread_context_changed")
    def on_assistant_context_changed() -> None:
        """Nothing to do: the audience is the DM itself, whatever channel the user is viewing."""

    register_history_listeners(app, deps)

    @app.command("/lorebot")
    def on_command(ack: Ack, command: dict) -> None:
        text = (command.get("text") or "").strip()
        if is_question(text):  # the asker sees at once that it is working; the answer replaces this
            ack(text=WORKING, response_type="ephemeral")
        else:
            ack()
        deps.workers.submit(run_command, Command(channel_id=command["channel_id"], user_id=command["user_id"],
                                                 text=text, response_url=command["response_url"],
                                                 team_id=command.get("team_id")), deps.slash)

    @app.action(VOTE_UP)
    @app.action(VOTE_DOWN)
    def on_vote(ack: Ack, body: dict, action: dict) -> None:
        ack()
        up = action["action_id"] == VOTE_UP
        counted = vote_by_button(deps.replies.feedback, interaction_id=action.get("value", ""),
                                 user_id=body["user"]["id"], up=up, at=float(action.get("action_ts") or 0),
                                 metrics=deps.replies.metrics)
        thanks = ("Thanks, your :+1: is counted." if up else "Thanks, your :-1: is counted; it helps me improve.") \
            if counted else "I couldn't record that vote: I have no record of this answer."
        ResponseUrl(body.get("response_url")).send_quietly(thanks)

    @app.action(SHARE)
    def on_share(ack: Ack, body: dict, action: dict) -> None:
        ack()
        deps.workers.submit(share_answer, interaction_id=action.get("value", ""), user_id=body["user"]["id"],
                            channel_id=(body.get("channel") or {}).get("id", ""),
                            response_url=body.get("response_url"), deps=deps.slash)

    @app.error
    def on_error(error: Exception, body: dict) -> None:
        log.error("a Slack request failed: %s", (body or {}).get("type"), exc_info=error)


def register_history_listeners(app: App, deps: BotDeps) -> None:
    """Channel events that change who may see a listed channel's history, or whether it exists."""

    @app.event("channel_converted_to_private")
    @app.event("channel_shared")
    def on_channel_narrowed(event: dict) -> None:
        reason = "made private" if event["type"] == "channel_converted_to_private" else "shared outside the workspace"
        forget_conversation(deps, event)
        if deps.slack_sync is not None and event.get("channel"):
            deps.history_executor.submit(deps.slack_sync.narrow, event["channel"], reason)

    @app.event("channel_archive")
    @app.event("group_archive")
    @app.event("channel_deleted")
    @app.event("group_deleted")
    def on_channel_gone(event: dict) -> None:
        forget_conversation(deps, event)
        if deps.slack_sync is not None and event.get("channel"):
            deps.history_executor.submit(deps.slack_sync.gone, event["channel"], deleted=event["type"].endswith("_deleted"))

    @app.event("member_left_channel")
    def on_member_left(event: dict) -> None:
        if deps.slack_sync is not None and event.get("channel") and event.get("user") == deps.slack_sync.me.user_id:
            forget_conversation(deps, event)
            deps.history_executor.submit(deps.slack_sync.left, event["channel"])

    @app.event("channel_left")
    @app.event("group_left")
    def on_lorebot_left(event: dict) -> None:
        """Sent to lorebot itself when it is removed (Slack sometimes withholds it: member_left_channel
        and the catch-up's conversations.info also find it)."""
        forget_conversation(deps, event)
        if deps.slack_sync is not None and event.get("channel"):
            deps.history_executor.submit(deps.slack_sync.left, event["channel"])


def sync_history_later(deps: BotDeps, event: dict) -> None:
    """Queue the index update a message event makes (a listed channel's new, edited or deleted
    message) for a worker; events that change nothing indexed are dropped here. Never raises: the
    listener answers after this."""
    try:
        if deps.slack_sync is not None and message_change(event, deps.slack_sync.me) is not None:
            deps.history_executor.submit(deps.slack_sync.on_message, event)
    except Exception:
        log.error("could not queue the index update of a message event", exc_info=True)


def forget_conversation(deps: BotDeps, event: dict) -> None:
    conversations = deps.replies.conversations
    if conversations is not None and event.get("channel"):
        conversations.forget(event["channel"])


def answer_later(deps: BotDeps, ask: Ask) -> None:
    """Queue the question for a worker; progress starts showing now, so a question waiting behind
    others still gets its "working" sign on time."""
    deps.workers.submit(answer_in_thread, ask, deps.replies, begin_reply(ask, deps.replies))


def ask_from(event: dict, body: dict, *, surface: str) -> Ask:
    return Ask(channel_id=event["channel"], user_id=event["user"], text=event.get("text", ""), ts=event["ts"],
               thread_ts=event.get("thread_ts") or event["ts"], surface=surface, team_id=body.get("team_id"))


def first_time(ledger: EventLedger, body: dict, event: dict | None) -> bool:
    """True the first time this event (and the message it carries) is seen, by any replica.

    If the database cannot say, the event is handled: a rare double answer beats silence.
    """
    keys = [f"event:{body['event_id']}" if body.get("event_id") else None]
    if event is not None:
        keys.append(message_key(event))
    keys = [k for k in keys if k]
    if not keys:
        return True
    try:
        return ledger.first_sighting(*keys)
    except Exception:
        log.error("the event ledger failed; handling %s anyway", keys, exc_info=True)
        return True


def publish_home(deps: BotDeps, user_id: str) -> None:
    try:
        deps.replies.client.views_publish(user_id=user_id, view=home_view(deps.home_facts()))
    except Exception:
        log.error("could not publish the App Home of %s", user_id, exc_info=True)


def greet_assistant_thread(deps: BotDeps, channel_id: str, thread_ts: str) -> None:
    try:
        deps.replies.client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=ASSISTANT_GREETING)
    except Exception:
        log.error("could not greet assistant thread %s", thread_ts, exc_info=True)
