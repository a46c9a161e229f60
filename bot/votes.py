"""👍 / 👎 reactions and the feedback buttons, turned into votes on an answer."""

from __future__ import annotations

import logging

from bot.metrics import Metrics
from training.feedback import DOWN, UP, FeedbackStore

log = logging.getLogger(__name__)

_REACTIONS = {"+1": UP, "thumbsup": UP, "-1": DOWN, "thumbsdown": DOWN}


def reaction_vote(reaction: str) -> int | None:
    """UP, DOWN or None for a reaction name, whatever its skin tone.

    >>> reaction_vote("+1::skin-tone-4"), reaction_vote("thumbsdown"), reaction_vote("tada")
    (1, -1, None)
    """
    return _REACTIONS.get(reaction.split("::", 1)[0])


def vote_by_reaction(feedback: FeedbackStore, event: dict, *, added: bool, metrics: Metrics | None = None) -> bool:
    """Count (or, when removed, retract) a reaction on one of the bot's answer messages.

    Reactions on any other message are not votes; the caller has already dropped the bot's own.
    """
    value = reaction_vote(event.get("reaction", ""))
    item = event.get("item") or {}
    if value is None or item.get("type") != "message" or not event.get("user"):
        return False
    interaction_id = feedback.interaction_for_message(item.get("channel", ""), item.get("ts", ""))
    if interaction_id is None:
        return False
    at = float(event.get("event_ts") or 0)
    if added:
        counted = feedback.cast_vote(interaction_id, user_id=event["user"], value=value, via="reaction", at=at)
        if counted and metrics is not None:
            metrics.vote(value, "reaction")
        return counted
    retracted = feedback.retract_vote(interaction_id, user_id=event["user"], value=value, at=at)
    if retracted and metrics is not None:
        metrics.retraction(value, "reaction")
    return retracted


def vote_by_button(feedback: FeedbackStore, *, interaction_id: str, user_id: str, up: bool, at: float,
                   metrics: Metrics | None = None) -> bool:
    """Count a click on 👍 Helpful / 👎 Not helpful; False if the answer is not on record."""
    value = UP if up else DOWN
    counted = feedback.cast_vote(interaction_id, user_id=user_id, value=value, via="button", at=at)
    if counted and metrics is not None:
        metrics.vote(value, "button")
    return counted
