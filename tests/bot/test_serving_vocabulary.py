"""The bot keeps the words questions are mended from current on its own, questions or not."""

from __future__ import annotations

import threading
import time

from bot.app import build_services
from bot.config import load_settings
from bot.serving import _keep_vocabulary_current
from knowledge.access import Audience, Scope

QUESTION = "is there a gym reimbursment"


def test_a_document_narrowed_while_no_one_asks_stops_lending_its_words(tmp_path, hashing_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "perks.md").write_text("# Perks\n\nThe gym reimbursement is 60 USD a month.\n")
    services = build_services(load_settings(data_dir=tmp_path / "data"), embedder=hashing_embedder)
    stopping = threading.Event()
    try:
        services.ingestor.ingest_paths([docs], scope=Scope.public())
        everyone = Audience.for_conversation("C0GENERAL")
        _keep_vocabulary_current(services, stopping, every_s=0.05)
        wait_for(lambda: services.retriever.mend(QUESTION, everyone) == "is there a gym reimbursement")

        # Narrowed to #people while nobody asks anything.
        services.ingestor.ingest_paths([docs], scope=Scope.channels(["C0PEOPLE"]))
        wait_for(lambda: services.retriever._vocabulary is not None
                 and services.retriever._vocabulary.uses("reimbursement", frozenset({"public"})) == 0)

        assert services.retriever.mend(QUESTION, everyone) == QUESTION  # the first question after it
        assert services.retriever.mend(QUESTION, Audience.for_conversation("C0PEOPLE")) == \
            "is there a gym reimbursement"
    finally:
        stopping.set()
        services.close()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the vocabulary was not refreshed in the background"
        time.sleep(0.02)
