"""The dataset builder: answers people endorsed in, RAFT-style chat examples out.

Every interaction in the feedback store is either written or excluded for exactly one reason,
checked in this order (the names are those of :data:`EXCLUSION_REASONS`, and of the counts in
``lorebot train --dry-run --json``):

1. ``before_since``: created before ``DatasetOptions.since``.
2. ``not_endorsed``: fewer than ``min_upvotes`` 👍, or 👍 minus 👎 below ``min_net_votes``. Votes
   are the store's: one per person per answer, the latest one, retracted ones gone.
3. ``unknown_conversation``: where the question was asked is not known (an answer recorded before
   lorebot looked, or Slack did not say), and the channel is not listed as trainable.
4. ``private_conversation``: the question was asked in a private channel, a DM, a group DM or a
   channel shared outside the workspace (Slack Connect), not listed as trainable. What people say
   there is theirs, whatever documents the answer came from.
5. ``not_found``: the bot said the documents did not answer the question.
6. ``private_passage``: a passage the answer was written from (cited or not) is neither ``public``
   nor scoped only to channels an admin listed as trainable. Training data reaches everyone who
   will ever talk to the model, so no number of 👍 lets a private passage in.
7. ``no_citations``: the answer cites none of its passages with a ``[n]`` that exists.
8. ``empty_after_scrubbing``: nothing but placeholders is left of the question or the answer.
9. ``near_duplicate``: a better-voted interaction (then an earlier one) asked nearly the same question.

The question an example carries is the asker's own words (``Interaction.asked``). The question
as the bot searched for it, with earlier messages of the thread folded in (written by others, who
were never asked), is used only where anyone could read them: a public channel of this workspace.

Scrubbing (:func:`scrub`) replaces e-mail addresses, phone numbers, tokens and keys, and Slack user
mentions with placeholders, in the question, the answer and every passage shown.

Near-duplicates are found by MinHash with locality-sensitive hashing over each question's word set
(lower case, punctuation gone, a plural ``s`` dropped): each question is compared only with the kept
questions sharing one of its LSH bands, and a pair is a duplicate when the exact Jaccard
similarity of their word sets reaches ``near_duplicate_threshold``. Words, not characters: two
questions that differ in one short but telling word ("Q1" and "Q2") stay apart. Questions are taken best
voted first, so of a group the best-voted one stays. Work grows with the number of questions,
not with its square.

The split is by a hash of the question's word set, so it is the same on every run, whatever
else is in the store, and questions that differ in case, punctuation or word order land together.
The seed shuffles the passages of each example and picks distractors; it never moves the split.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from knowledge.access import PUBLIC
from knowledge.errors import ConfigurationError
from training.chat_format import SYSTEM_PROMPT, chat_messages, fence_passage, user_turn
from training.feedback import PUBLIC_CHANNEL, FeedbackStore, Interaction, TalliedInteraction, UsedPassage

FORMAT = "lorebot-raft-chat/1"
TRAIN_FILE, HELDOUT_FILE, MANIFEST_FILE = "train.jsonl", "heldout.jsonl", "manifest.json"
FILE_MODE = 0o644  # as a plain open() would leave them: the training job may run as another user

EXCLUSION_REASONS: dict[str, str] = {
    "before_since": "created before the `since` option",
    "not_endorsed": "too few upvotes, or upvotes minus downvotes below the threshold",
    "unknown_conversation": "asked where lorebot does not know whether the conversation is public "
                            "(recorded before it looked, or Slack did not say), in a channel not listed as trainable",
    "private_conversation": "asked in a private channel, a DM, a group DM or a channel shared outside the "
                            "workspace, not listed as trainable",
    "not_found": "the bot said the documents did not answer the question",
    "private_passage": "a passage behind the answer is neither public nor from channels listed as trainable",
    "passage_changed": "a passage behind the answer has since left the index, no longer says what it said, "
                       "or was narrowed so it may no longer be learned",
    "no_citations": "the answer cites none of its passages",
    "empty_after_scrubbing": "nothing but placeholders is left of the question or the answer",
    "near_duplicate": "a better-voted interaction asked nearly the same question",
}


class CurrentDocuments(Protocol):
    """The index as it is now, asked about the passages of an old answer (see bot.current_documents)."""

    def scope_of(self, doc_id: str) -> tuple[str, ...] | None:
        """The document's scope labels now; None when it is no longer indexed."""

    def still_says(self, doc_id: str, text: str) -> bool:
        """Whether the document still holds every line of ``text`` (a passage shown for an answer)."""


@dataclass(frozen=True)
class DatasetOptions:
    """What makes an interaction a training example, and how examples are laid out."""

    min_net_votes: int = 1  # upvotes - downvotes must reach this
    min_upvotes: int = 1
    # Admin-listed channel IDs whose passages, and the questions asked in them, may be learned.
    trainable_channels: frozenset[str] = frozenset()
    heldout_fraction: float = 0.1
    distractors: int = 2  # extra passages per example beyond the ones the answer cites
    near_duplicate_threshold: float = 0.8  # question similarity at/above which the later/lower-voted one is dropped
    since: datetime | None = None  # only interactions created at/after this (None: all)
    seed: int = 0
    # What the index holds now. An answer is learned only if its passages are still there, still
    # say what they said and may still be learned: a channel made private or a message deleted
    # after the 👍 must not reach a dataset. None: only the scopes recorded at answer time count.
    documents: CurrentDocuments | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trainable_channels", frozenset(str(c) for c in self.trainable_channels))
        if not 0.0 <= self.heldout_fraction <= 1.0:
            raise ConfigurationError(f"the held-out fraction is between 0 and 1, not {self.heldout_fraction}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ConfigurationError("the near-duplicate threshold is a similarity above 0 and at most 1, "
                                     f"not {self.near_duplicate_threshold}")
        if self.distractors < 0:
            raise ConfigurationError(f"the number of distractor passages cannot be negative ({self.distractors})")
        if PUBLIC in self.trainable_channels:
            raise ConfigurationError("trainable channels are channel IDs; public passages are always trainable")

    def as_json(self) -> dict[str, Any]:
        """The options as recorded in the manifest."""
        return {
            "min_net_votes": self.min_net_votes,
            "min_upvotes": self.min_upvotes,
            "trainable_channels": sorted(self.trainable_channels),
            "heldout_fraction": self.heldout_fraction,
            "distractors": self.distractors,
            "near_duplicate_threshold": self.near_duplicate_threshold,
            "since": None if self.since is None else _utc(self.since).isoformat(),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class DatasetReport:
    """What a build found and wrote (or, in a dry run, would write)."""

    path: Path  # the output directory
    eligible: int  # interactions that passed every rule (before the split) = train + heldout
    excluded: dict[str, int]  # reason -> count (every reason of EXCLUSION_REASONS, zeros included)
    train: int
    heldout: int
    manifest: dict
    written: bool = True
    # Every interaction read: "train", "heldout", or the reason it was left out.
    decisions: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``lorebot train --dry-run --json`` shape (extend, never rename)."""
        return {
            "eligible": self.eligible,
            "excluded": dict(self.excluded),
            "train": self.train,
            "heldout": self.heldout,
            "path": str(self.path),
            "interactions": self.manifest["counts"]["interactions"],
            "written": self.written,
            "scrubbed": dict(self.manifest["scrubbed"]),
            "files": {name: entry["sha256"] for name, entry in self.manifest["files"].items()},
        }


# --- Scrubbing ----------------------------------------------------------------------------------

PLACEHOLDERS = {"email": "<email>", "phone": "<phone>", "secret": "<secret>", "user": "<user>"}
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))

_SECRET_VALUE = r"[A-Za-z0-9+/_.=~-]"
# (kind, pattern, replacement) in the order they run: secrets before e-mails (a URL's credentials
# look like an address), everything before phone numbers (keys are full of digits).
_SCRUBS: list[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    ("secret", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)"),
     "<secret>"),
    ("secret", re.compile(r"(?<=://)[^\s/@:<>]+:[^\s/@<>]+(?=@)"), "<secret>"),
    ("secret", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"), "<secret>"),
    ("secret", re.compile(
        r"\b(?:xox[abposr]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[A-Z0-9]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}|sk-[A-Za-z0-9_-]{16,}"
        r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    ), "<secret>"),
    ("secret", re.compile(rf"(?i)\b(bearer)\s+{_SECRET_VALUE}{{16,}}"), r"\1 <secret>"),
    ("secret", re.compile(
        r"(?i)\b([\w.-]*(?:key|token|secret|password|passwd|passphrase|pwd))"
        r"([\"']?\s*[:=]\s*[\"']?)([^\s\"',;<>]+)"
    ), lambda m: m.group(1) + m.group(2) + ("<secret>" if _is_secret(m.group(1), m.group(3)) else m.group(3))),
    ("email", re.compile(r"<mailto:[^|>]+(?:\|[^>]*)?>"), "<email>"),
    ("email", re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
     "<email>"),
    ("user", re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>"), "<user>"),
    ("phone", re.compile(r"<tel:[^|>]+(?:\|[^>]*)?>"), "<phone>"),
    # International: +CC…, or 00CC… written in groups (a bare run of digits after 00 is an ID).
    ("phone", re.compile(r"(?<![\w+])(?:\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}"
                         r"|00\d{1,3}(?:[ .-](?:\(\d{1,4}\)|\d{1,8})){2,6})(?![\w-])"),
     lambda m: "<phone>" if 8 <= sum(c.isdigit() for c in m.group().removeprefix("00")) <= 15 else m.group()),
    ("phone", re.compile(
        r"(?<![\w$+.,-])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[.,]\d)"
    ), "<phone>"),
]


def _is_secret(label: str, value: str) -> bool:
    # A password is anything but a plain word; other keys only long machine-made strings.
    value = value.rstrip(".")
    if label.lower().endswith(("password", "passwd", "passphrase", "pwd", "secret")):
        return len(value) >= 6 and not value.isalpha()
    return (len(value) >= 16 and re.fullmatch(f"{_SECRET_VALUE}+", value) is not None
            and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))


def scrub_counted(text: str) -> tuple[str, Counter[str]]:
    """:func:`scrub`, and how many of each kind of placeholder it put in."""
    counts: Counter[str] = Counter()
    for kind, pattern, replacement in _SCRUBS:
        placeholder = PLACEHOLDERS[kind]
        before = text.count(placeholder)
        text = pattern.sub(replacement, text)
        counts[kind] += text.count(placeholder) - before
    return text, +counts


def scrub(text: str) -> str:
    """``text`` with what must not be learned replaced by placeholders.

    E-mail addresses (plain or as Slack writes them):

    >>> scrub("Mail jane.doe+hr@example.co.uk or <mailto:ops@corp.io|ops@corp.io>.")
    'Mail <email> or <email>.'

    Phone numbers, international and US, but not other numbers:

    >>> scrub("Call +44 20 7946 0958, 0049 30 1234567, (202) 555-0143 or 1-800-555-0199.")
    'Call <phone>, <phone>, <phone> or <phone>.'
    >>> scrub("18 days in 2024, $30,000, version 1.2.3, 10.0.0.1 and 2024-01-15.")
    '18 days in 2024, $30,000, version 1.2.3, 10.0.0.1 and 2024-01-15.'

    Tokens and keys (Slack, AWS, GitHub, API keys, bearer tokens, values of keys and passwords):

    >>> scrub("xoxb-123456789012-abcdefABCDEF and xapp-1-A0123-456789-abcdef")
    '<secret> and <secret>'
    >>> scrub("AKIAIOSFODNN7EXAMPLE ghp_0123456789abcdefghijABCDEFGHIJ012345 sk-proj-Abc123def456ghi789")
    '<secret> <secret> <secret>'
    >>> scrub("Authorization: Bearer 8f742231b10e8888abcd99aaabbb85a5")
    'Authorization: Bearer <secret>'
    >>> scrub('api_key="9f8e7d6c5b4a39281706f5e4", password: hunter2, client_secret=s3cr3t!, token = see the wiki')
    'api_key="<secret>", password: <secret>, client_secret=<secret>, token = see the wiki'

    Slack user mentions:

    >>> scrub("Ask <@U024BE7LH> or <@U0ADMIN|sam>.")
    'Ask <user> or <user>.'
    """
    return scrub_counted(text)[0]


def _blank(text: str) -> bool:
    return re.search(r"\w", _PLACEHOLDER.sub("", text)) is None


# --- Eligibility --------------------------------------------------------------------------------


def passage_is_trainable(passage: UsedPassage, trainable_channels: frozenset[str]) -> bool:
    """Whether a passage may be learned: it is ``public``, or every channel it is scoped to is trainable.

    A passage shared with two channels says what members of both may read; listing one of them
    as trainable does not speak for the other.

    >>> p = UsedPassage("d", "d#0", "T", "s", "x", scope=("C0ENG", "C0SRE"), score=1.0)
    >>> passage_is_trainable(p, frozenset({"C0ENG"})), passage_is_trainable(p, frozenset({"C0ENG", "C0SRE"}))
    (False, True)
    """
    scope = frozenset(passage.scope)
    return PUBLIC in scope or (bool(scope) and scope <= trainable_channels)


def still_learnable(passage: UsedPassage, documents: CurrentDocuments, trainable_channels: frozenset[str]) -> bool:
    """A passage recorded with an answer that may still be learned: its document is indexed, may be
    learned under its scope now, and still holds the passage's text."""
    scope = documents.scope_of(passage.doc_id)
    if scope is None or not passage_is_trainable(replace(passage, scope=tuple(scope)), trainable_channels):
        return False
    return documents.still_says(passage.doc_id, passage.text)


def conversation_exclusion(interaction: Interaction, trainable_channels: frozenset[str]) -> str | None:
    """Why the conversation a question was asked in keeps it out of training, or None if it may be learned:
    a public channel of this workspace alone, or a channel an admin listed as trainable.

    >>> asked = lambda kind, channel="C0GENERAL": Interaction("i", channel, "U", "mention", "q", "q", "a", True,
    ...                                                       "tgi", conversation_kind=kind)
    >>> [conversation_exclusion(asked(k), frozenset()) for k in ("public", "im", "shared", None)]
    [None, 'private_conversation', 'private_conversation', 'unknown_conversation']
    >>> conversation_exclusion(asked("private", "G0HR"), frozenset({"G0HR"})) is None
    True
    """
    if interaction.channel_id in trainable_channels:
        return None
    if not interaction.conversation_kind:
        return "unknown_conversation"
    return None if interaction.conversation_kind == PUBLIC_CHANNEL else "private_conversation"


def question_to_learn(interaction: Interaction) -> str:
    """The question as an example carries it: with the thread's earlier messages folded in only in
    a public channel; elsewhere the asker's own words alone.

    >>> follow_up = Interaction("i", "G0HR", "U", "follow_up", "and for contractors?",
    ...                         "Our layoffs hit 30 people. and for contractors?", "a", True, "tgi",
    ...                         conversation_kind="private")
    >>> question_to_learn(follow_up)
    'and for contractors?'
    """
    return interaction.question if interaction.conversation_kind == PUBLIC_CHANNEL else interaction.asked


_CITATION = re.compile(r"(\s*)\[(\d+)\]")


def cited_numbers(answer: str) -> list[int]:
    """The ``[n]`` an answer cites, in order of first use.

    >>> cited_numbers("Ten days [2][1], see [2].")
    [2, 1]
    """
    return list(dict.fromkeys(int(m.group(2)) for m in _CITATION.finditer(answer)))


def remap_citations(answer: str, mapping: dict[int, int]) -> str:
    """The answer with each ``[old]`` replaced by ``[mapping[old]]``; citations not mapped are removed.

    >>> remap_citations("Ten days [1][2]. Ghost [7].", {1: 3, 2: 1})
    'Ten days [3][1]. Ghost.'
    """
    def replace(match: re.Match[str]) -> str:
        new = mapping.get(int(match.group(2)))
        return "" if new is None else f"{match.group(1)}[{new}]"

    return _CITATION.sub(replace, answer)


@dataclass
class _Candidate:
    """An interaction that passed every rule but near-duplication, scrubbed."""

    interaction_id: str
    created_at: datetime
    question: str
    answer: str
    cited: list[tuple[int, UsedPassage]]  # (cited_as, passage), in order of first citation
    uncited: list[UsedPassage]
    upvotes: int
    downvotes: int
    scrubbed: Counter[str] = field(default_factory=Counter)


def _screen(tally: TalliedInteraction, options: DatasetOptions) -> str | _Candidate:
    """The exclusion reason for one interaction, or the candidate it makes."""
    if options.since is not None and tally.created_at < _utc(options.since):
        return "before_since"
    net = tally.upvotes - tally.downvotes
    if tally.interaction is None or tally.upvotes < options.min_upvotes or net < options.min_net_votes:
        return "not_endorsed"
    interaction = tally.interaction
    if reason := conversation_exclusion(interaction, options.trainable_channels):
        return reason
    if not interaction.found:
        return "not_found"
    if not all(passage_is_trainable(p, options.trainable_channels) for p in interaction.passages):
        return "private_passage"
    if options.documents is not None and not all(
            still_learnable(p, options.documents, options.trainable_channels) for p in interaction.passages):
        return "passage_changed"
    by_number: dict[int, UsedPassage] = {}
    for passage in interaction.passages:
        if passage.cited_as is not None:
            by_number.setdefault(passage.cited_as, passage)
    answer, answer_counts = scrub_counted(interaction.answer)
    cited = [(n, by_number[n]) for n in cited_numbers(answer) if n in by_number]
    if not cited:
        return "no_citations"
    question, question_counts = scrub_counted(question_to_learn(interaction))
    if _blank(question) or _blank(remap_citations(answer, {})):
        return "empty_after_scrubbing"
    shown = {id(p) for _, p in cited}
    return _Candidate(
        interaction_id=interaction.interaction_id, created_at=tally.created_at, question=question.strip(),
        answer=answer.strip(), cited=cited, uncited=[p for p in interaction.passages if id(p) not in shown],
        upvotes=tally.upvotes, downvotes=tally.downvotes, scrubbed=question_counts + answer_counts,
    )


# --- Near-duplicates ----------------------------------------------------------------------------


def normalise_question(question: str) -> str:
    """The question's words, lower case, one space apart.

    >>> normalise_question("  How do I reset my PASSWORD?!")
    'how do i reset my password'
    """
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", question).casefold()))


def question_words(question: str) -> frozenset[str]:
    """The distinct words of a question, lower case, a plural ``s`` taken off.

    >>> sorted(question_words("How do I reset my passwords? How?"))
    ['do', 'how', 'i', 'my', 'password', 'reset']
    """
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                     for w in normalise_question(question).split())


def question_similarity(a: str, b: str) -> float:
    """Jaccard similarity of two questions' word sets (:func:`question_words`).

    >>> question_similarity("How do I reset my password?", "how do i reset my passwords")
    1.0
    >>> round(question_similarity("How many vacation days do I get?", "How many vacation days do I get in 2025?"), 2)
    0.78
    >>> round(question_similarity("What is the Q1 deadline?", "What is the Q2 deadline?"), 2)
    0.67
    """
    x, y = question_words(a), question_words(b)
    return len(x & y) / len(x | y) if x | y else 1.0


class NearDuplicateIndex:
    """MinHash LSH over questions' word sets, verified by exact Jaccard similarity.

    Bands are as wide as they can be while a pair at the threshold still shares a band with
    probability ≥ 99.5 %; a shared band only makes a pair a candidate, the exact similarity decides.
    """

    PERMUTATIONS = 128

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.rows = max(r for r in range(1, 17) if 1 - (1 - threshold**r) ** (self.PERMUTATIONS // r) >= 0.995)
        self.bands = self.PERMUTATIONS // self.rows
        # Multiply-shift hashing: (a·x + b mod 2**64) >> 32 with odd a, one (a, b) per permutation.
        rng = np.random.default_rng(0x10BE)
        self._a = rng.integers(0, 1 << 63, size=self.PERMUTATIONS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 1 << 63, size=self.PERMUTATIONS, dtype=np.uint64)
        self._buckets: dict[tuple[int, bytes], list[int]] = {}
        self._kept: list[frozenset[str]] = []

    def add_unless_duplicate(self, question: str) -> bool:
        """Keep ``question`` unless a kept one is at least ``threshold`` similar; True if kept."""
        shingles = question_words(question) or frozenset({""})
        keys = self._band_keys(shingles)
        seen: set[int] = set()
        for key in keys:
            for other in self._buckets.get(key, ()):
                if other not in seen:
                    seen.add(other)
                    kept = self._kept[other]
                    if len(shingles & kept) >= self.threshold * len(shingles | kept):
                        return False
        self._kept.append(shingles)
        for key in keys:
            self._buckets.setdefault(key, []).append(len(self._kept) - 1)
        return True

    def _band_keys(self, shingles: frozenset[str]) -> list[tuple[int, bytes]]:
        hashes = np.fromiter((int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
                              for s in shingles), dtype=np.uint64, count=len(shingles))
        signature = ((np.outer(hashes, self._a) + self._b) >> np.uint64(32)).min(axis=0)
        return [(band, signature[band * self.rows : (band + 1) * self.rows].tobytes()) for band in range(self.bands)]

    def describe(self) -> dict[str, Any]:
        return {"method": "MinHash LSH over the question's word set, exact Jaccard check",
                "threshold": self.threshold, "permutations": self.PERMUTATIONS, "bands": self.bands,
                "rows": self.rows}


def _drop_near_duplicates(candidates: list[_Candidate], index: NearDuplicateIndex) -> list[_Candidate]:
    best_first = sorted(candidates, key=lambda c: (-(c.upvotes - c.downvotes), -c.upvotes, c.created_at,
                                                   c.interaction_id))
    return [c for c in best_first if index.add_unless_duplicate(c.question)]


# --- Split --------------------------------------------------------------------------------------


def split_key(question: str) -> str:
    """What the split hashes: the question's distinct words (:func:`question_words`), sorted.

    >>> split_key("Reset my passwords, how?") == split_key("how  reset MY password")
    True
    """
    return " ".join(sorted(question_words(question)))


def is_heldout(question: str, fraction: float) -> bool:
    """Whether a question belongs to the held-out split: a hash, so the same on every run."""
    digest = hashlib.sha256(b"lorebot-split/1\0" + split_key(question).encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


# --- Examples -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shown:
    title: str
    source: str
    text: str


class _DistractorPool:
    """Passages of eligible interactions (all public or trainable), for examples short of uncited ones."""

    def __init__(self, candidates: Iterable[_Candidate]):
        unique: dict[tuple[str, str], UsedPassage] = {}
        for candidate in candidates:
            for passage in [*(p for _, p in candidate.cited), *candidate.uncited]:
                unique.setdefault((passage.chunk_id, passage.text), passage)
        self.passages = [unique[key] for key in sorted(unique)]

    def sample(self, rng: random.Random, k: int, avoid: set[str]) -> list[UsedPassage]:
        """Up to ``k`` passages whose chunk IDs are not in ``avoid``, drawn by ``rng``."""
        if k <= 0 or not self.passages:
            return []
        tries = 8 * k + 8
        if len(self.passages) <= tries:
            order = rng.sample(range(len(self.passages)), len(self.passages))
        else:
            order = [rng.randrange(len(self.passages)) for _ in range(tries)]
        chosen: list[UsedPassage] = []
        avoid = set(avoid)
        for i in order:
            passage = self.passages[i]
            if passage.chunk_id not in avoid:
                chosen.append(passage)
                avoid.add(passage.chunk_id)
                if len(chosen) == k:
                    break
        return chosen


class _Scrubber:
    """Scrubs passage fields once per distinct text (the same passages recur across answers)."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[str, Counter[str]]] = {}

    def __call__(self, text: str, counts: Counter[str]) -> str:
        if text not in self._done:
            self._done[text] = scrub_counted(text)
        scrubbed, found = self._done[text]
        counts.update(found)
        return scrubbed


def _example(candidate: _Candidate, pool: _DistractorPool, options: DatasetOptions,
             scrubber: _Scrubber, counts: Counter[str]) -> dict[str, Any]:
    rng = random.Random(f"{options.seed}:{candidate.interaction_id}")
    extra = candidate.uncited[: options.distractors]
    avoid = {p.chunk_id for _, p in candidate.cited} | {p.chunk_id for p in candidate.uncited}
    extra += pool.sample(rng, options.distractors - len(extra), avoid)
    shown: list[tuple[int | None, UsedPassage]] = [*candidate.cited, *((None, p) for p in extra)]
    rng.shuffle(shown)
    mapping = {old: new for new, (old, _) in enumerate(shown, start=1) if old is not None}
    fenced = [
        fence_passage(n, _Shown(scrubber(p.title, counts), scrubber(p.source, counts), scrubber(p.text, counts)))
        for n, (_, p) in enumerate(shown, start=1)
    ]
    messages = chat_messages(user_turn(candidate.question, fenced), system=SYSTEM_PROMPT)
    messages.append({"role": "assistant", "content": remap_citations(candidate.answer, mapping)})
    counts.update(candidate.scrubbed)
    return {"id": candidate.interaction_id, "messages": messages}


# --- Output -------------------------------------------------------------------------------------


class _Output:
    """One JSONL file being produced: hashed always, written to a temporary file unless a dry run."""

    def __init__(self, directory: Path, name: str, write: bool):
        self.name, self.path = name, directory / name
        self.sha256, self.examples, self.bytes, self.ids = hashlib.sha256(), 0, 0, []
        self._file = (tempfile.NamedTemporaryFile("wb", dir=directory, prefix=f".{name}.", delete=False)
                      if write else None)

    def add(self, example: dict[str, Any]) -> None:
        line = (json.dumps(example, ensure_ascii=False) + "\n").encode()
        self.sha256.update(line)
        self.examples, self.bytes = self.examples + 1, self.bytes + len(line)
        self.ids.append(example["id"])
        if self._file is not None:
            self._file.write(line)

    def describe(self) -> dict[str, Any]:
        return {"sha256": self.sha256.hexdigest(), "examples": self.examples, "bytes": self.bytes}

    def finish(self) -> None:
        if self._file is not None:
            _close_synced(self._file)
            os.chmod(self._file.name, FILE_MODE)
            os.replace(self._file.name, self.path)

    def abandon(self) -> None:
        if self._file is not None:
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)


def _close_synced(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=f".{MANIFEST_FILE}.", delete=False,
                                     encoding="utf-8") as file:
        json.dump(manifest, file, indent=2, ensure_ascii=False)
        file.write("\n")
    try:
        with open(file.name, "rb+") as synced:
            os.fsync(synced.fileno())
        os.chmod(file.name, FILE_MODE)
        os.replace(file.name, directory / MANIFEST_FILE)
    except BaseException:
        Path(file.name).unlink(missing_ok=True)
        raise


# --- The build ----------------------------------------------------------------------------------


def build_dataset(
    feedback: FeedbackStore,
    out_dir: Path,
    options: DatasetOptions = DatasetOptions(),
    *,
    progress: Callable[[int, int], None] | None = None,
    write: bool = True,
) -> DatasetReport:
    """Turn the endorsed, trainable interactions of ``feedback`` into ``train.jsonl`` and
    ``heldout.jsonl`` in ``out_dir``, with a ``manifest.json`` describing them.

    Each line is ``{"id": interaction_id, "messages": [system, user, assistant]}``: the serving
    system prompt; the question with the cited passages and ``options.distractors`` more (the
    interaction's uncited passages first, then passages of other eligible interactions) in a
    shuffled order; the endorsed answer with its ``[n]`` renumbered to that order. Text is scrubbed.

    Every file appears whole (written aside, then renamed), the manifest last, so a reader that
    checks the manifest's hashes never works from a mix of two builds. ``write=False`` computes
    everything, hashes included, and writes nothing. ``progress(read, total)`` follows the reading
    of the store.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    total = feedback.stats().interactions if progress else 0
    excluded = Counter(dict.fromkeys(EXCLUSION_REASONS, 0))
    candidates: list[_Candidate] = []
    decisions: dict[str, str] = {}
    read = 0
    for read, tally in enumerate(feedback.tallied_interactions(
            since=options.since, min_upvotes=options.min_upvotes, min_net_votes=options.min_net_votes), start=1):
        screened = _screen(tally, options)
        if isinstance(screened, str):
            excluded[screened] += 1
            decisions[tally.interaction_id] = screened
        else:
            candidates.append(screened)
        if progress and read % 1000 == 0:
            progress(read, max(total, read))
    if progress:
        progress(read, read)

    index = NearDuplicateIndex(options.near_duplicate_threshold)
    kept = _drop_near_duplicates(candidates, index)
    excluded["near_duplicate"] = len(candidates) - len(kept)
    decisions.update((c.interaction_id, "near_duplicate") for c in candidates)
    del candidates
    kept.sort(key=lambda c: (c.created_at, c.interaction_id))
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {split: _Output(out_dir, name, write) for split, name in (("train", TRAIN_FILE),
                                                                        ("heldout", HELDOUT_FILE))}
    scrubbed: Counter[str] = Counter(dict.fromkeys(PLACEHOLDERS, 0))
    try:
        pool, scrubber = _DistractorPool(kept), _Scrubber()
        for candidate in kept:
            split = "heldout" if is_heldout(candidate.question, options.heldout_fraction) else "train"
            decisions[candidate.interaction_id] = split
            outputs[split].add(_example(candidate, pool, options, scrubber, scrubbed))
        for output in outputs.values():
            output.finish()
    except BaseException:
        for output in outputs.values():
            output.abandon()
        raise

    train, heldout = outputs["train"], outputs["heldout"]
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "options": options.as_json(),
        "counts": {"interactions": read, "eligible": len(kept), "train": train.examples,
                   "heldout": heldout.examples, "excluded": sum(excluded.values())},
        "excluded": dict(excluded),
        "exclusion_reasons": EXCLUSION_REASONS,
        "files": {TRAIN_FILE: train.describe(), HELDOUT_FILE: heldout.describe()},
        "interaction_ids": {"train": train.ids, "heldout": heldout.ids},
        "chat_format": {"system_prompt_sha256": hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()},
        "split": {"by": "sha256 of the sorted distinct words of the question",
                  "heldout_fraction": options.heldout_fraction},
        "near_duplicates": index.describe(),
        "scrubbed": dict(scrubbed),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    if write:
        _write_manifest(out_dir, manifest)
    return DatasetReport(path=out_dir, eligible=len(kept), excluded=dict(excluded), train=train.examples,
                         heldout=heldout.examples, manifest=manifest, written=write, decisions=decisions)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
