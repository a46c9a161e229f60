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


def test_a_started_bot_reads_the_words_questions_are_mended_from_before_any_question(tmp_path, hashing_embedder,
                                                                                      monkeypatch):
    import time

    from bot.app import build_services, build_slack_bot
    from bot.config import load_settings
    from bot.credentials import SlackCredentials
    from tests.fakes.slack_api import FakeSlackAPI

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    token = "xoxb-1234567890-0987654321-Zr4nd0mT0k3n"
    with FakeSlackAPI(bot_token=token) as slack:
        services = build_services(load_settings(data_dir=tmp_path / "data", slack_api_url=slack.url),
                                  embedder=hashing_embedder)
        bot = build_slack_bot(services, SlackCredentials(token, "s" * 32, None))
        try:
            deadline = time.monotonic() + 30
            while services.retriever._vocabulary_checked is None:  # no question asked: the bot's own refresh
                assert time.monotonic() < deadline, "the bot did not read the vocabulary at start"
                time.sleep(0.02)
            # Read, not only tried: a failed read also stamps the check (questions go on unmended).
            assert services.retriever._vocabulary is not None
        finally:
            bot.close()
            services.close()
