"""The composition root: what a long-running process gets that a one-shot command does not."""

from __future__ import annotations

from bot.app import build_services
from bot.config import load_settings
from knowledge.access import Audience
from knowledge.embedding import BUNDLED_WEIGHTS_SHA256


def test_a_long_running_process_answers_the_same_from_memory_and_onnx(handbook_data_dir, handbook_services):
    question = "how long until a page escalates?"
    audience = Audience.for_conversation("C0ENGINEER")
    one_shot, _ = handbook_services.retriever.search(question, audience)

    bot = build_services(load_settings(data_dir=handbook_data_dir), long_running=True)
    try:
        served, _ = bot.retriever.search(question, audience)
        assert bot.embedder.question_encoder is not None
        assert (handbook_data_dir / "models" / f"{BUNDLED_WEIGHTS_SHA256}.onnx").is_file()
        assert bot.store.vectors_in_memory and bot.store._snapshot is not None
    finally:
        bot.close()
    assert served and [p.doc_id for p in served] == [p.doc_id for p in one_shot]
    assert all(abs(a.similarity - b.similarity) < 1e-4 for a, b in zip(served, one_shot))


def test_one_shot_commands_load_neither(handbook_services):
    handbook_services.retriever.search("expense policy", Audience.for_conversation("C0FINANCE"))
    assert handbook_services.store._snapshot is None
