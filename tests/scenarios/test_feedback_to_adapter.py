"""The loop closed: answers marked 👍 in public channels become, through the scheduler's train job, a
versioned, evaluated, promoted adapter that the next answer is asked from — and a private
channel's answer, however loved, never enters it."""

from __future__ import annotations

import json
import shutil

from tests.fakes import slack_requests as sr
from tests.scenarios.test_slack_bot import mention
from training.registry import AdapterRegistry

PUBLIC_QUESTIONS = [
    "how many vacation days do I get in my first couple of years here?",
    "do unused vacation days roll over into next year?",
    "what is the company's policy on remote work and office hours?",
    "how do I expense a flight for a customer visit?",
    "what should I do in my first week after onboarding?",
    "what does the code of conduct say about harassment?",
    "how do I get a new laptop from IT?",
    "what does the company do and how many people work here?",
]
PRIVATE_QUESTION = "I'm primary on-call next week - if I sleep through a page, how long until it goes to someone else?"


def answer_and_endorse(bot, tgi, question: str, *, channel: str, likes: int) -> str:
    tgi.reply(f"From the handbook: this is covered in the first passage [1]. ({question})")
    event = mention(bot, question, channel=channel)
    bot.settle()
    [reply] = [m for m in bot.slack.messages(channel, thread_ts=event["ts"]) if m["ts"] != event["ts"]]
    for n in range(likes):
        response = bot.sender.event(sr.reaction(True, "+1", user=f"U0FAN{n}", channel=channel, item_ts=reply["ts"]))
        assert response.status == 200
    bot.settle()
    return reply["ts"]


def test_thumbs_up_in_public_channels_become_the_adapter_the_next_answer_uses(model_bot, tgi, tiny_base, tmp_path,
                                                                            monkeypatch):
    for question in PUBLIC_QUESTIONS:
        answer_and_endorse(model_bot, tgi, question, channel="C0GENERAL", likes=2)
    answer_and_endorse(model_bot, tgi, PRIVATE_QUESTION, channel="C0ENGINEER", likes=9)
    settings = model_bot.services.settings
    # The scheduler reads the index the bot answers from (a shared volume, or Weaviate): an answer
    # is learned only while the passages behind it are still indexed as they were.
    shutil.copytree(settings.index_dir, tmp_path / "scheduler" / "index")

    # The scheduler's train job, as `lorebot scheduler` runs it: settings from the environment.
    for name, value in {
        "LOREBOT_DATA_DIR": str(tmp_path / "scheduler"), "LOREBOT_DATABASE_URL": settings.database_url,
        "LOREBOT_ADAPTERS_DIR": str(settings.adapter_registry_dir), "LOREBOT_BASE_MODEL": tiny_base,
        "LOREBOT_TRAIN_MIN_NEW_EXAMPLES": "4", "LOREBOT_HELDOUT_FRACTION": "0.3",
        # Small enough for a CPU test: a few steps of a tiny model; the gate still compares losses.
        "LOREBOT_TRAIN_EPOCHS": "2", "LOREBOT_TRAIN_LEARNING_RATE": "0.01", "LOREBOT_TRAIN_BATCH_SIZE": "4",
        # The tiny tokenizer spends ~2,000 tokens on an example's three passages: at the default 2,048
        # the answer of an example with long distractors is cut off, and a held-out set of only such
        # examples has no loss to compare (the test then failed on which distractors were drawn).
        "LOREBOT_TRAIN_MAX_SEQ_LEN": "4096",
        "LOREBOT_LORA_TARGET_MODULES": json.dumps(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"]),
        "LOREBOT_PROMOTION_MARGIN": "0.0", "LOREBOT_PROMOTION_MIN_CITATION_VALIDITY": "0.0",
    }.items():
        monkeypatch.setenv(name, value)
    from bot.config import load_settings
    from bot.jobs import job_specs, train_if_enough

    assert "train" in {spec.id for spec in job_specs(load_settings())}
    outcome = train_if_enough()
    assert outcome.outcome == "ok", outcome.detail

    registry = AdapterRegistry(settings.adapter_registry_dir)
    [version] = registry.versions()
    assert registry.promoted() == version.name and "promoted" in outcome.detail
    manifest = json.loads((version.path / "dataset_manifest.json").read_text())
    trained = [i for ids in manifest["interaction_ids"].values() for i in ids]
    records = {r["interaction_id"]: r for r in model_bot.feedback.export()}
    assert sorted(trained) == sorted(i for i, r in records.items() if r["channel_id"] == "C0GENERAL")
    assert manifest["excluded"]["private_passage"] == 1
    assert json.loads((version.path / "eval_report.json").read_text())["promote"] is True

    # The next answer is asked from the promoted adapter, and records it.
    answer_and_endorse(model_bot, tgi, PUBLIC_QUESTIONS[0], channel="C0GENERAL", likes=0)
    assert tgi.chat_requests()[-1]["model"] == version.name
    newest = max(model_bot.feedback.export(), key=lambda r: r["created_at"])
    assert newest["adapter"] == version.name
