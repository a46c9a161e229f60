"""Typos and workplace shorthand in a question, mended from the words of the documents it may see.

Slack questions are typed fast: "is there a gym reimbursment", "how many ppl work here", "who's our
vp eng". The embedding model and BM25 both read such words poorly, and a question that would be
answered lands under the relevance floor. Before a question is searched:

- a word from a short, general list of workplace abbreviations ("ppl", "eng", "mgr") is spelt out,
  unless the documents the audience may see use the abbreviation itself;
- a word the audience's documents never use is replaced by the word one edit away (a letter added,
  dropped, changed, or two swapped) that those documents use most; when they use another form of
  it (the same stem), only by a word of that stem ("reimbursment" → "reimbursement").

A word the embedding model's own tokenizer knows whole ("drone", "jury", "approve") is a real word
spelt right, even where the documents never use it or use another form of it ("approved"): it is
left as asked. A question about something the documents do not cover must stay that question, and
"who needs to approve that" must not become "who needs to approved that".

Only the question changes, and only into words of documents the audience may see: every word is
kept with the scopes of the documents that use it, and a candidate counts only through scopes the
audience is allowed. Whether a word is mended, and into what, therefore depends on the visible
documents alone, so it cannot tell anyone whether a private document uses a word.

The vocabulary holds the index's words in a symmetric-delete table (each word under its one-letter
deletions), so mending a question costs a few dictionary look-ups per unknown word. It follows the
index a document at a time: it remembers what each document contributed (its words with their
counts, under its scope labels), so a document added, edited, removed or rescoped changes only its
own counts, and a word no visible document uses any more is gone, exactly as if it had never been
there.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from knowledge.stores.memory_keywords import Analyzer

# Common, generic workplace shorthand. Spelt out only where the visible documents do not use the
# short form themselves (a handbook that says "PTO" keeps "pto").
ABBREVIATIONS: dict[str, str] = {
    "ppl": "people", "eng": "engineering", "engg": "engineering", "mgr": "manager", "mgrs": "managers",
    "mgmt": "management", "dept": "department", "depts": "departments", "pto": "paid time off",
    "ooo": "out of office", "wfh": "work from home", "eod": "end of day", "eow": "end of week",
    "mtg": "meeting", "mtgs": "meetings", "yr": "year", "yrs": "years", "mo": "month", "mos": "months",
    "wk": "week", "wks": "weeks", "hrs": "hours", "mins": "minutes", "reimb": "reimbursement",
    "acct": "account", "accts": "accounts", "appt": "appointment", "approx": "approximately",
    "govt": "government", "msg": "message", "msgs": "messages", "info": "information",
    "req": "request", "reqs": "requests", "reqd": "required", "emp": "employee", "emps": "employees",
    "docs": "documents", "doc": "document", "prod": "production", "perf": "performance",
    "bday": "birthday", "hq": "headquarters", "vacay": "vacation", "convo": "conversation",
    "bc": "because", "thx": "thanks",
}
# Words typed without their apostrophe: never "mended" into a document word one letter away
# ("dont" is not "done").
_CONTRACTIONS = frozenset("""
whats dont cant wont isnt arent doesnt didnt wasnt werent hasnt havent hadnt shouldnt couldnt wouldnt
im ive id ill youre youve youll theyre theyve thats theres heres hows wheres whos whens lets its
""".split())
MIN_LENGTH = 4  # shorter words are too often another word one letter away
# ... and into a word of another stem, only from this long ("wifi" is not "wiki").
MIN_LENGTH_ANOTHER_WORD = 5
MAX_LENGTH = 30
# Words shorter than this are never reported unfamiliar: "vp", "hr" and their like are shorthand.
MIN_LENGTH_UNFAMILIAR = 3
_WORD = re.compile(r"[^\W\d_]+")
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits: "ic4" is one token, not the word "ic"


@dataclass(frozen=True, slots=True)
class DocumentWords:
    """What one document contributed to a vocabulary: its words, each with how often it uses it,
    under its scope labels, as of its content hash."""

    content_hash: str
    labels: frozenset[str]
    words: tuple[str, ...]  # the vocabulary's own string of each word, not a copy per document
    counts: array  # how often it uses each of them ("I")

    @property
    def key(self) -> tuple[str, frozenset[str]]:
        return self.content_hash, self.labels


@dataclass
class QueryVocabulary:
    """The words of an index, each with how often it is used under each scope label.

    Kept a document at a time (``put_document``, ``rescope_document``, ``remove_document``); every
    change of one document is made whole under the vocabulary's lock, so a question being mended
    meanwhile sees each document either as it was or as it is, never half of it.
    """

    words: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per stem, how often words of that stem are used under each scope label.
    stems: dict[str, dict[str, int]] = field(default_factory=dict)
    deletions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Real words whatever the documents say (see dictionary_words); None: none known, and then no
    # word is mended into a word of another stem.
    dictionary: frozenset[str] | None = None
    analyzer: Analyzer = field(default_factory=Analyzer, repr=False)
    # doc_id → what it contributed: what a change or removal takes away again.
    documents: dict[str, DocumentWords] = field(default_factory=dict, repr=False)
    # Each word held → its one string, which all documents share (the index's words are few, the
    # documents that use them many), and its stems.
    _known: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, init=False, repr=False,
                                                           compare=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, texts: Iterable[tuple[Iterable[str], str]], *,
              dictionary: frozenset[str] | None = None) -> QueryVocabulary:
        """From ``(scope labels, text)`` pairs, one per chunk (each kept as a document of its own)."""
        vocabulary = cls(dictionary=dictionary)
        for i, (labels, text) in enumerate(texts):
            vocabulary.put_document(f"#{i}", "", labels, [text])
        return vocabulary

    def document_key(self, doc_id: str) -> tuple[str, frozenset[str]] | None:
        """``(content hash, scope labels)`` of the document as the vocabulary holds it (None: not held)."""
        with self._lock:
            held = self.documents.get(doc_id)
        return None if held is None else held.key

    def document_keys(self) -> dict[str, tuple[str, frozenset[str]]]:
        with self._lock:
            return {doc_id: held.key for doc_id, held in self.documents.items()}

    def put_document(self, doc_id: str, content_hash: str, labels: Iterable[str], texts: Iterable[str]) -> None:
        """Hold the document as ``texts`` (its chunks' text) under ``labels``, in place of what it
        contributed before (if anything)."""
        counts = Counter()
        for text in texts:
            counts.update(_WORD.findall(text.lower()))
        known = self._known
        for word in counts:  # new words are stemmed outside the lock (the analyzer remembers them)
            if word not in known:
                self.analyzer.terms(word)
        labels, uses = frozenset(labels), array("I", counts.values())
        with self._lock:
            new = DocumentWords(content_hash, labels, tuple(known[w][0] if w in known else w for w in counts), uses)
            old = self.documents.pop(doc_id, None)
            if old is not None:
                self._count(old, -1)
            self._count(new, 1)
            self.documents[doc_id] = new

    def rescope_document(self, doc_id: str, labels: Iterable[str]) -> bool:
        """Move the document's words under ``labels``; False if the document is not held."""
        with self._lock:
            old = self.documents.get(doc_id)
            if old is None:
                return False
            new = DocumentWords(old.content_hash, frozenset(labels), old.words, old.counts)
            self._count(old, -1)
            self._count(new, 1)
            self.documents[doc_id] = new
            return True

    def remove_document(self, doc_id: str) -> bool:
        """Take away what the document contributed; False if it was not held."""
        with self._lock:
            old = self.documents.pop(doc_id, None)
            if old is not None:
                self._count(old, -1)
            return old is not None

    def _count(self, document: DocumentWords, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) a document's words; a word no label counts any more
        is forgotten, with its deletions and stems (called under the lock)."""
        labels, words, known, all_stems = document.labels, self.words, self._known, self.stems
        for word, n in zip(document.words, document.counts):
            n *= sign
            counts = words.get(word)
            if counts is None:
                counts = words[word] = {}
                known[word] = (word, tuple(self.analyzer.terms(word)))
                if MIN_LENGTH <= len(word) <= MAX_LENGTH:
                    for key in (word, *_deletions(word)):
                        self.deletions[key].add(word)
            stems = known[word][1]
            _add_per_label(counts, labels, n)
            if not counts:
                del words[word], known[word]
                if MIN_LENGTH <= len(word) <= MAX_LENGTH:
                    for key in (word, *_deletions(word)):
                        similar = self.deletions.get(key)
                        if similar is not None:
                            similar.discard(word)
                            if not similar:
                                del self.deletions[key]
            for stem in stems:
                stem_counts = all_stems.get(stem)
                if stem_counts is None:
                    stem_counts = all_stems[stem] = {}
                _add_per_label(stem_counts, labels, n)
                if not stem_counts:
                    del all_stems[stem]

    def uses(self, word: str, allowed: frozenset[str]) -> int:
        """How often documents under ``allowed`` use ``word`` (0: never, or only documents the
        audience may not see)."""
        with self._lock:
            return sum(n for label, n in self.words.get(word, {}).items() if label in allowed)

    def knows(self, word: str, allowed: frozenset[str]) -> bool:
        """True when a visible document uses the word or another form of it (its stem)."""
        if self.uses(word, allowed):
            return True
        stems = self.analyzer.terms(word)
        with self._lock:
            return bool(stems) and all(not allowed.isdisjoint(self.stems.get(s, ())) for s in stems)

    def mend(self, question: str, allowed: frozenset[str]) -> str:
        """The question with its shorthand spelt out and its typos mended (see the module's notes);
        the question itself when nothing needs mending.

        >>> v = QueryVocabulary.build([(["public"], "Gym reimbursement: 60 USD. We are 118 people. Ask the vendor.")],
        ...                           dictionary=frozenset({"drone"}))
        >>> v.mend("is there a gym reimbursment? how many ppl", frozenset({"public"}))
        'is there a gym reimbursement? how many people'
        >>> v.mend("who signs off for a drone pilot? or a vendro", frozenset({"public"}))
        'who signs off for a drone pilot? or a vendor'
        >>> v.mend("is there a gym reimbursment?", frozenset({"C0OTHER"}))
        'is there a gym reimbursment?'
        """

        def replace(match: re.Match) -> str:
            word = match.group()
            mended = self._mend_word(word.lower(), allowed)
            return word if mended is None else mended

        with self._lock:  # one state of the vocabulary for the whole question
            return _WORD.sub(replace, question)

    def unfamiliar(self, question: str, allowed: frozenset[str]) -> tuple[str, ...]:
        """The words of ``question`` that no document under ``allowed`` uses in any form: what it
        asks about that those documents never mention ("wifi", "dress"), or typos left unmended.
        Words holding digits ("ic4", "fy26") and very short ones are left out: they are names and
        shorthand more often than words.

        >>> v = QueryVocabulary.build([(["public"], "The office is in Boulder. Codes of conduct apply.")])
        >>> v.unfamiliar("whats the wifi password at the Boulder office? is there a dress code (ic4)", frozenset({"public"}))
        ('wifi', 'password', 'dress')
        >>> v.unfamiliar("whats the wifi password", frozenset({"C0OTHER"}))
        ('wifi', 'password')
        """
        words: list[str] = []
        with self._lock:  # one state of the vocabulary for the whole question
            for token in _TOKEN.findall(question.lower()):
                if (len(token) < MIN_LENGTH_UNFAMILIAR or any(ch.isdigit() for ch in token) or token in _CONTRACTIONS
                        or not self.analyzer.terms(token) or token in words):  # stop words say nothing
                    continue
                if not self.knows(token, allowed):
                    words.append(token)
        return tuple(words)

    def _mend_word(self, word: str, allowed: frozenset[str]) -> str | None:
        if word in ABBREVIATIONS:
            return None if self.uses(word, allowed) else ABBREVIATIONS[word]
        if not MIN_LENGTH <= len(word) <= MAX_LENGTH or word in _CONTRACTIONS:
            return None
        if self.uses(word, allowed) or (self.dictionary is not None and word in self.dictionary):
            return None  # spelt as the documents spell it, or a real word spelt right ("approve", "reporter")
        candidates = {c for key in (word, *_deletions(word)) for c in self.deletions.get(key, ())}
        candidates = {c for c in candidates if _one_edit(word, c)}
        if self.knows(word, allowed) or self.dictionary is None or len(word) < MIN_LENGTH_ANOTHER_WORD:
            # Another form of a word the documents use ("reimbursment" stems as "reimbursement"
            # does), or a word that may be real (no dictionary to tell): spelt as the documents
            # spell it, never turned into another word.
            stems = self.analyzer.terms(word)
            candidates = {c for c in candidates if self.analyzer.terms(c) == stems}
        best = max(((self.uses(c, allowed), c) for c in candidates), default=(0, ""),
                   key=lambda pair: (pair[0], -len(pair[1]), pair[1]))
        return best[1] if best[0] else None


def dictionary_words(embedder: object) -> frozenset[str] | None:
    """The whole words of the embedding model's tokenizer vocabulary (WordPiece or SentencePiece),
    lower-cased; None when the embedder does not show its tokenizer."""
    tokenizer = getattr(getattr(embedder, "model", None), "tokenizer", None) or getattr(embedder, "tokenizer", None)
    try:
        vocabulary = tokenizer.get_vocab()
    except Exception:
        return None
    words = (token.removeprefix("▁").removeprefix("Ġ") for token in vocabulary if not token.startswith("##"))
    return frozenset(w.lower() for w in words if len(w) >= MIN_LENGTH and w.isalpha()) or None


def _add_per_label(counts: dict[str, int], labels: Iterable[str], n: int) -> None:
    """Add ``n`` (negative: take away) under each label; a label whose count reaches 0 is dropped."""
    for label in labels:
        total = counts.get(label, 0) + n
        if total:
            counts[label] = total
        else:
            del counts[label]


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _one_edit(a: str, b: str) -> bool:
    """True when ``b`` is ``a`` with one letter added, dropped, changed, or two neighbours swapped.

    >>> _one_edit("reimbursment", "reimbursement"), _one_edit("teh", "the"), _one_edit("cat", "dog")
    (True, True, False)
    """
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1:]
    rest = i + 1
    if a[rest:] == b[rest:]:
        return True
    return rest < len(a) and a[i] == b[rest] and a[rest] == b[i] and a[rest + 1:] == b[rest + 1:]
