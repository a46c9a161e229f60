"""A tiny Llama-shaped model and a chat dataset for training tests, built in the test, never downloaded.

The tokenizer is a byte-level BPE trained here on the same kind of text the dataset holds (lorebot's
system prompt, fenced passages, questions, answers with ``[n]`` citations), wrapped as a
``PreTrainedTokenizerFast`` with bos/eos/pad tokens and a ChatML-like chat template. The model is a
``LlamaForCausalLM`` with random weights from a fixed seed: 2 layers, hidden size 64.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from training.chat_format import chat_messages, fence_passage, user_turn

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]

# The end-of-turn token is EOS, so a model trained on the completion learns to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

TEAMS = ["platform", "payments", "search", "billing", "security", "mobile", "data", "support", "design", "sales",
         "legal", "finance", "growth", "infra", "research", "people"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
ROOMS = ["Atlas", "Birch", "Cedar", "Delta", "Ember", "Fjord", "Grove", "Harbor"]


class _Passage:
    def __init__(self, title: str, source: str, text: str):
        self.title, self.source, self.text = title, source, text


def _fact(team: str, day: str, room: str) -> str:
    return f"The {team} team meets on {day} in the {room} room."


def make_examples(count: int, *, seed: int, prefix: str = "ex") -> list[dict]:
    """``count`` chat examples in the dataset builder's format: system, user (two to four fenced
    passages and a question), assistant (the answer, citing the passage it comes from as ``[n]``)."""
    rng = random.Random(seed)
    examples = []
    for i in range(count):
        passages = rng.randint(2, 4)
        teams = rng.sample(TEAMS, passages)
        facts = [(team, rng.choice(DAYS), rng.choice(ROOMS)) for team in teams]
        target = rng.randrange(passages)
        fenced = [fence_passage(n + 1, _Passage(f"{t.title()} team", f"wiki/{t}.md", _fact(t, d, r)))
                  for n, (t, d, r) in enumerate(facts)]
        team, day, room = facts[target]
        question = f"When and where does the {team} team meet?"
        answer = f"The {team} team meets on {day} in the {room} room [{target + 1}]."
        messages = [*chat_messages(user_turn(question, fenced)), {"role": "assistant", "content": answer}]
        examples.append({"id": f"{prefix}{seed}-{i:04d}", "messages": messages})
    return examples


def write_dataset(directory: Path, train: list[dict], heldout: list[dict]) -> Path:
    """``train.jsonl``, ``heldout.jsonl`` and ``manifest.json``, as ``training/dataset.py`` writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with (directory / name).open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    digest = hashlib.sha256(json.dumps([train, heldout], sort_keys=True).encode()).hexdigest()
    manifest = {"train": len(train), "heldout": len(heldout), "sha256": digest,
                "interaction_ids": {"train": [r["id"] for r in train], "heldout": [r["id"] for r in heldout]}}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


def train_tokenizer(texts: list[str], *, vocab_size: int = 800):
    """A byte-level BPE trained on ``texts``, with special tokens and the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=ROLE_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(directory: Path, *, seed: int = 0) -> Path:
    """A random-weight Llama (2 layers, hidden 64) and its trained tokenizer, saved in ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = [m["content"] for ex in make_examples(300, seed=seed + 1000) for m in ex["messages"]]
    tokenizer = train_tokenizer(texts)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_lora_options(**changes):
    """LoRA options that teach the tiny model the answers' shape in a few dozen CPU steps."""
    from dataclasses import replace

    from training.finetune import LoraOptions

    base = LoraOptions(rank=16, alpha=32, dropout=0.05, target_modules=ALL_PROJECTIONS, learning_rate=1e-2,
                       batch_size=4, max_seq_len=512, seed=0, max_steps=40, save_steps=20)
    return replace(base, **changes)
