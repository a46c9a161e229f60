"""The prompt for a generation server: passages packed, highest-ranked first, into its input budget.

lorebot does not have the served model's tokenizer, so it counts tokens with an estimate meant to
err high for the tokenizers of today's chat models (byte-level BPE and SentencePiece): a run of
letters costs one token per four letters (rounded up), and every digit, punctuation mark and
other symbol costs one. English prose estimates about 1.3x its true count. Where the estimate is
still low (a server that counts differently), the server's "too long" answer names both numbers
and the generator packs again within the corrected budget (see ``bot/generation/tgi.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.generation.base import Turn
from training.chat_format import (
    SYSTEM_PROMPT,
    PassageText,
    chat_messages,
    disarm_citations,
    fence_passage,
    user_turn,
)

# A chat template wraps each message in role markers (Llama 3: four tokens and an end token) and
# the prompt in a begin token and the assistant's header.
TOKENS_PER_MESSAGE = 8
TOKENS_PER_PROMPT = 8
CUT_MARK = " […]"
_PIECES = re.compile(r"[A-Za-z]+|\S")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
def estimate_tokens(text: str) -> int:
    """An estimate of the tokens ``text`` costs a chat model, meant to err high.

    >>> estimate_tokens("Vacation: 18 days a year.")
    9
    """
    return sum(math.ceil(len(piece) / 4) if piece[0].isascii() and piece[0].isalpha() else 1
               for piece in _PIECES.findall(text))


def estimate_messages(messages: Sequence[dict[str, str]]) -> int:
    return TOKENS_PER_PROMPT + sum(estimate_tokens(m["content"]) + TOKENS_PER_MESSAGE for m in messages)


def cut_to_tokens(text: str, max_tokens: int) -> str:
    """The longest start of ``text`` within ``max_tokens`` (estimated), ending at a sentence if that
    keeps most of it, else at a word; ``CUT_MARK`` shows the cut.

    >>> cut_to_tokens("One two three. Four five six seven.", 9)
    'One two three. […]'
    >>> cut_to_tokens("Short.", 10)
    'Short.'
    """
    if estimate_tokens(text) <= max_tokens:
        return text
    budget = max_tokens - estimate_tokens(CUT_MARK)
    end, used = 0, 0
    for word in re.finditer(r"\S+", text):
        cost = estimate_tokens(word.group())
        if used + cost > budget:
            break
        used, end = used + cost, word.end()
    kept = text[:end]
    sentences = list(_SENTENCE_END.finditer(kept + " "))
    if sentences and sentences[-1].end() >= 0.6 * len(kept):
        kept = kept[: sentences[-1].end()]
    return kept.rstrip() + CUT_MARK if kept.strip() else ""


@dataclass(frozen=True)
class Prompt:
    """The messages to send, how many passages (the first ones) they hold, and their estimated size."""

    messages: list[dict[str, str]]
    passages_used: int
    estimated_tokens: int
    last_passage_cut: bool


def build_prompt(
    question: str, passages: Sequence[PassageText], *, history: Sequence[Turn] = (), budget_tokens: int,
    system_role: bool = True, history_share: float = 0.25, min_cut_passage_tokens: int = 48,
) -> Prompt:
    """The chat messages for ``question``, never estimated over ``budget_tokens``.

    Earlier turns of the thread get at most ``history_share`` of the budget (newest kept first);
    passages then fill the rest in rank order, the last one cut at a sentence or word if at least
    ``min_cut_passage_tokens`` of it fit. A question too long for the budget is itself cut.
    """
    question = cut_to_tokens(question, budget_tokens // 4)
    turns = _recent_turns(history, int(budget_tokens * history_share))

    def messages(fenced: list[str]) -> list[dict[str, str]]:
        return chat_messages(user_turn(question, fenced), history=turns, system=SYSTEM_PROMPT, system_role=system_role)

    fenced: list[str] = []
    used = estimate_messages(messages([]))
    cut = False
    for n, passage in enumerate(passages, start=1):
        shown = disarm_citations(passage.text)
        block = fence_passage(n, passage, text=shown)
        cost = estimate_tokens(block) + 1
        if used + cost <= budget_tokens:
            fenced.append(block)
            used += cost
            continue
        frame = estimate_tokens(fence_passage(n, passage, text="")) + 1
        room = budget_tokens - used - frame
        if room >= min_cut_passage_tokens:
            text = cut_to_tokens(shown, room)
            if text:
                fenced.append(fence_passage(n, passage, text=text))
                cut = True
        break
    final = messages(fenced)
    while estimate_messages(final) > budget_tokens and fenced:  # only if the pieces' rounding added up
        fenced.pop()
        cut = False
        final = messages(fenced)
    return Prompt(messages=final, passages_used=len(fenced), estimated_tokens=estimate_messages(final),
                  last_passage_cut=cut)


def _recent_turns(history: Sequence[Turn], budget: int) -> list[tuple[str, str]]:
    kept: list[tuple[str, str]] = []
    for turn in reversed(history):
        cost = estimate_tokens(turn.text) + TOKENS_PER_MESSAGE
        if cost > budget:
            break
        budget -= cost
        kept.append((turn.role, turn.text))
    return list(reversed(kept))
