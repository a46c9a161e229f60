"""Reading a data set in the BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Every malformed line is an error that names the file and the line number: a judgement silently
dropped would change the score without anyone knowing why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from knowledge.embedding import sha256_of
from knowledge.errors import DatasetError


@dataclass(frozen=True)
class BeirDocument:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    """A corpus, the queries of one split, and their graded relevance judgements."""

    name: str
    split: str
    corpus: tuple[BeirDocument, ...]
    queries: dict[str, str]
    # query ID → {document ID: grade}; only grades above 0 count as relevant.
    qrels: dict[str, dict[str, int]]
    corpus_sha256: str
    # Judgements that name a document the corpus does not have (some BEIR sets have a few).
    unknown_documents: int = 0


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """The data set in ``folder``; only queries judged in ``split`` are kept.

    >>> load_beir(Path("/nonexistent"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    knowledge.errors.DatasetError: /nonexistent/corpus.jsonl: no such file ...
    """
    folder = Path(folder)
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        if not path.is_file():
            raise DatasetError(f"{path}: no such file (a BEIR data set has corpus.jsonl, queries.jsonl "
                               f"and qrels/<split>.tsv)")
    corpus = tuple(_read_corpus(corpus_path))
    if not corpus:
        raise DatasetError(f"{corpus_path}: the corpus is empty")
    all_queries = dict(_read_queries(queries_path))
    judged = _read_qrels(qrels_path)
    missing = sorted(set(judged) - set(all_queries))
    if missing:
        line = judged[missing[0]][1]
        raise DatasetError(f"{qrels_path}:{line}: query {missing[0]!r} is not in {queries_path.name}"
                           f" ({len(missing)} such queries)")
    doc_ids = {d.doc_id for d in corpus}
    qrels: dict[str, dict[str, int]] = {}
    unknown = 0
    for query_id, (grades, _) in judged.items():
        known = {doc: grade for doc, grade in grades.items() if doc in doc_ids}
        unknown += len(grades) - len(known)
        if any(grade > 0 for grade in known.values()):  # a query with nothing relevant cannot be scored
            qrels[query_id] = known
    if not qrels:
        raise DatasetError(f"{qrels_path}: no query has a relevant document in the corpus")
    return BeirDataset(
        name=folder.resolve().name, split=split, corpus=corpus,
        queries={q: all_queries[q] for q in qrels}, qrels=qrels,
        corpus_sha256=sha256_of(corpus_path), unknown_documents=unknown,
    )


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, json_object(line, f"{path}:{number}")


def json_object(line: str, where: str) -> dict:
    """One JSONL line as a JSON object; ``where`` (file:line) starts the error message.

    >>> json_object('[1]', "q.jsonl:2")
    Traceback (most recent call last):
    ...
    knowledge.errors.DatasetError: q.jsonl:2: expected a JSON object, got list
    """
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _field(row: dict, name: str, path: Path, number: int, *, required: bool = True) -> str:
    value = row.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, (int, float)) and name == "_id" and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or (required and name == "_id" and not value.strip()):
        raise DatasetError(f"{path}:{number}: field {name!r} is missing or not a string")
    return value


def _read_corpus(path: Path) -> Iterator[BeirDocument]:
    seen: dict[str, int] = {}
    for number, row in _json_lines(path):
        doc_id = _field(row, "_id", path, number)
        if doc_id in seen:
            raise DatasetError(f"{path}:{number}: document {doc_id!r} already appeared on line {seen[doc_id]}")
        seen[doc_id] = number
        yield BeirDocument(doc_id=doc_id, title=_field(row, "title", path, number, required=False),
                           text=_field(row, "text", path, number))


def _read_queries(path: Path) -> Iterator[tuple[str, str]]:
    for number, row in _json_lines(path):
        yield _field(row, "_id", path, number), _field(row, "text", path, number)


def _read_qrels(path: Path) -> dict[str, tuple[dict[str, int], int]]:
    """query ID → ({document ID: grade}, the line it first appeared on)."""
    judged: dict[str, tuple[dict[str, int], int]] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip("\r\n").split("\t")
            if not line.strip() or (number == 1 and parts[0] == "query-id"):
                continue
            if len(parts) != 3:
                raise DatasetError(f"{path}:{number}: expected 3 tab-separated columns "
                                   f"(query-id, corpus-id, score), found {len(parts)}")
            query_id, doc_id, grade = parts
            try:
                score = int(grade)
            except ValueError as e:
                raise DatasetError(f"{path}:{number}: the score {grade!r} is not a whole number") from e
            grades, _ = judged.setdefault(query_id, ({}, number))
            grades[doc_id] = score
    return judged

