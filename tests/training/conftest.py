"""Training fixtures: a tiny random-weight Llama with a tokenizer trained here, a chat dataset in
the dataset builder's format, and one adapter trained on it (all built once per session, offline)."""

from __future__ import annotations

import pytest

from tests.training.tiny_model import make_examples, tiny_lora_options, write_dataset


@pytest.fixture(scope="session")
def chat_dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("dataset"), make_examples(48, seed=1, prefix="train"),
                         make_examples(16, seed=2, prefix="held"))


@pytest.fixture(scope="session")
def trained(tiny_base, chat_dataset, tmp_path_factory):
    """An adapter version trained on the dataset (40 steps), in a registry of its own."""
    from training.finetune import finetune
    from training.registry import AdapterRegistry

    root = tmp_path_factory.mktemp("trained")
    registry = AdapterRegistry(root / "adapters")
    result = finetune(dataset_dir=chat_dataset, base_model=tiny_base, registry=registry,
                      options=tiny_lora_options(), work_dir=root / "work", progress=False)
    return registry, result
