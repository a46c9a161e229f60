"""Votes that Slack's events missed: compare recent answers' 👍/👎 reactions with the votes on record.

Slack delivers ``reaction_added``/``reaction_removed`` at most a few times and not at all while the
bot is down, so the scheduler asks Slack (``reactions.get``) for the reactions on every recent
answer and makes the reaction votes match what people see.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.metrics import JOB_METRICS, Metrics
from bot.votes import reaction_vote
from training.feedback import FeedbackStore, LinkedMessage

log = logging.getLogger(__name__)

GONE = frozenset({"message_not_found", "thread_not_found"})


@dataclass
class ReconcileReport:
    """What one pass did. ``missing``: answer messages deleted since; ``unreadable``: messages
    Slack would not show (channel archived, bot removed); ``ambiguous``: people with both a 👍 and a
    👎 and no vote to tell which came last (left alone); ``stopped``: why the pass ended early."""

    answers: int = 0
    messages: int = 0
    cast: int = 0
    retracted: int = 0
    missing: int = 0
    unreadable: int = 0
    ambiguous: int = 0
    stopped: str | None = None

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def summary(self) -> str:
        text = (f"{self.messages} message{'s' if self.messages != 1 else ''} of {self.answers} "
                f"answer{'s' if self.answers != 1 else ''} checked: {self.cast} vote{'s' if self.cast != 1 else ''} "
                f"cast, {self.retracted} retracted")
        extras = [f"{n} {label}" for n, label in ((self.missing, "deleted"), (self.unreadable, "unreadable"),
                                                    (self.ambiguous, "ambiguous")) if n]
        text += f" ({', '.join(extras)})" if extras else ""
        return text + (f"; stopped early: {self.stopped}" if self.stopped else "")

    def as_json(self) -> dict:
        return asdict(self)


class _StopPass(Exception):
    pass


def reconcile_votes(
    client: WebClient,
    feedback: FeedbackStore,
    *,
    since: datetime,
    bot_user_id: str | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> ReconcileReport:
    """Make the reaction votes on answers given since ``since`` match the reactions Slack shows.

    For each person, over all the messages of one answer:

    - a 👍 or 👎 reaction with no vote of that value → the vote is cast (via ``reaction``);
    - a reaction vote whose reaction is gone → it is retracted (their other thumb, if any, is cast);
    - a button vote is never touched (a click is the most deliberate signal, and its time cannot
      be compared with a reaction's, which Slack does not give);
    - both thumbs and no vote → left alone and counted as ambiguous;
    - the bot's own reactions are not votes.

    A vote written here carries ``at`` = the moment its answer's reactions were read (this
    machine's clock), so it fits the store's latest-event-wins rule: an event that happened after
    the read (a reaction removed a minute later, a button click) is newer and wins; an event that
    happened before it but arrives late (a retried ``reaction_added``) is older and changes
    nothing, so a vote never doubles. A reaction removed between the read and the write can
    bring back a vote for one pass; the next pass takes it back. Only reaction votes are replaced
    or removed, checked in the same statement that changes them.

    An answer with any message Slack cannot show is skipped, so a partial view never removes
    votes. Rate limits are the client's to honour (its retry handlers wait for Retry-After); if
    Slack still refuses, the pass stops and says so in the report. The votes it casts and retracts
    are counted (``via="reconcile"``) in ``metrics``, by default the scheduler's (:data:`JOB_METRICS`).
    """
    metrics = metrics if metrics is not None else JOB_METRICS.get()
    bot = bot_user_id if bot_user_id is not None else _bot_user_id(client)
    by_answer: dict[str, list[LinkedMessage]] = defaultdict(list)
    for message in feedback.linked_messages(since=since):
        by_answer[message.interaction_id].append(message)
    report = ReconcileReport()
    for interaction_id, shown_in in by_answer.items():
        report.answers += 1
        read_at = clock()
        try:
            thumbs = _thumbs(client, shown_in, bot_user_id=bot, report=report)
        except _StopPass as e:
            report.stopped = str(e)
            break
        if thumbs is not None:
            _match(feedback, interaction_id, thumbs, at=read_at, report=report, metrics=metrics)
    log.info("reconciled votes: %s", report.summary())
    return report


def _bot_user_id(client: WebClient) -> str:
    return str(client.auth_test()["user_id"])


def _thumbs(client: WebClient, shown_in: list[LinkedMessage], *, bot_user_id: str,
            report: ReconcileReport) -> dict[str, set[int]] | None:
    """Each person's 👍/👎 (as UP/DOWN) over an answer's messages; None if one cannot be read."""
    thumbs: dict[str, set[int]] = defaultdict(set)
    readable = True
    for message in shown_in:
        try:
            response = client.reactions_get(channel=message.channel_id, timestamp=message.ts, full=True)
        except SlackApiError as e:
            error = str(e.response.get("error") or "")
            if error == "ratelimited":
                raise _StopPass("Slack kept answering ratelimited") from e
            if error in GONE:
                report.missing += 1
            else:
                report.unreadable += 1
                log.warning("cannot read reactions on %s/%s: %s", message.channel_id, message.ts, error)
            readable = False
            continue
        report.messages += 1
        for reaction in (response.get("message") or {}).get("reactions") or []:
            value = reaction_vote(str(reaction.get("name") or ""))
            if value is None:
                continue
            for user in reaction.get("users") or []:
                if user != bot_user_id:
                    thumbs[user].add(value)
    return thumbs if readable else None


def _match(feedback: FeedbackStore, interaction_id: str, thumbs: dict[str, set[int]], *, at: float,
           report: ReconcileReport, metrics: Metrics | None) -> None:
    stored = feedback.votes_on(interaction_id)
    reaction_voters = {user for user, vote in stored.items() if vote.via == "reaction"}
    for user in sorted(set(thumbs) | reaction_voters):
        present, vote = thumbs.get(user, set()), stored.get(user)
        if vote is not None and (vote.via != "reaction" or vote.value in present):
            continue
        if len(present) == 1:
            (value,) = present
            if feedback.cast_vote(interaction_id, user_id=user, value=value, via="reaction", at=at,
                                  replacing=("reaction",)):
                report.cast += 1
                if metrics is not None:
                    metrics.vote(value, "reconcile")
        elif not present and vote is not None:
            if feedback.retract_vote(interaction_id, user_id=user, value=vote.value, at=at, via="reaction"):
                report.retracted += 1
                if metrics is not None:
                    metrics.retraction(vote.value, "reconcile")
        elif present:
            report.ambiguous += 1
