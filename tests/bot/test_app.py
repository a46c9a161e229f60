"""The composition root: what a long-running process gets that a one-shot command does not."""

from __future__ import annotations

from bot.app import build_services
from bot.config import load_settings
from knowledge.access import Audience
from knowledge.embedding import BUNDLED_WEIGHTS_SHA256


def test_a_long_running_process_answers_like_a_one_shot_command(handbook_data_dir):
    question = "how long until a page escalates?"
    audience = Audience.for_conversation("C0ENGINEER")
    settings = load_settings(data_dir=handbook_data_dir)
    one_shot = build_services(settings)
    bot = build_services(settings, long_running=True)
    try:
        expected, _ = one_shot.retriever.search(question, audience)
        # A one-shot command: PyTorch for the question, LanceDB's own search.
        assert one_shot.embedder.question_encoder is None
        assert not one_shot.store.vectors_in_memory and one_shot.store._snapshot is None

        served, _ = bot.retriever.search(question, audience)
        # The bot: the ONNX export (made in the data directory) and the in-memory copy.
        assert bot.embedder.question_encoder is not None
        assert (handbook_data_dir / "models" / f"{BUNDLED_WEIGHTS_SHA256}.onnx").is_file()
        assert bot.store._snapshot is not None
    finally:
        one_shot.close()
        bot.close()
    assert served and [p.doc_id for p in served] == [p.doc_id for p in expected]
    assert all(abs(a.similarity - b.similarity) < 1e-4 for a, b in zip(served, expected))
