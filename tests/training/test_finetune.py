"""LoRA fine-tuning: the loss falls on the answers only, training changes only the adapter, the
saved version reloads to the same model, and a run cut short continues from its checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from knowledge.errors import DatasetError
from tests.training.tiny_model import CHAT_TEMPLATE, make_examples, tiny_lora_options, write_dataset
from training.finetune import TrainingError, build_trainer, finetune, prompt_completion, publish
from training.registry import AdapterRegistry


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def test_the_prompt_gets_no_loss_only_the_answer_and_its_end_of_turn(tiny_base, chat_dataset, tmp_path):
    trainer = build_trainer(dataset_dir=chat_dataset, base_model=tiny_base, options=tiny_lora_options(),
                            output_dir=tmp_path)
    tokenizer = trainer.processing_class
    examples = [json.loads(line) for line in (chat_dataset / "train.jsonl").read_text().splitlines()]
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)  # what the model is fed: padded to the longest of the four
    assert len({len(r["input_ids"]) for r in rows}) > 1, "the batch should need padding"

    for i, example in enumerate(examples[:4]):
        pair = prompt_completion(example)
        prompt = _ids(tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, tokenize=True))
        full = _ids(tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=True))
        input_ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        assert input_ids[: len(full)] == full
        assert labels[: len(prompt)] == [-100] * len(prompt)  # system, passages, question, "<|assistant|>\n"
        assert labels[len(prompt): len(full)] == full[len(prompt):]
        assert labels[len(full):] == [-100] * (len(labels) - len(full))  # padding
        learned = tokenizer.decode(labels[len(prompt): len(full)])
        assert learned == example["messages"][-1]["content"] + tokenizer.eos_token + "\n"


def test_training_changes_only_the_lora_weights_and_the_saved_adapter_reloads_identically(tiny_base, chat_dataset,
                                                                                         tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer = build_trainer(dataset_dir=chat_dataset, base_model=tiny_base,
                            options=tiny_lora_options(max_steps=3, save_steps=100), output_dir=tmp_path / "work")
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    trainer.train()

    after = dict(model.named_parameters())
    for name, value in before.items():
        if name in trainable:
            assert not torch.equal(after[name], value), f"{name} did not learn"
        else:
            assert torch.equal(after[name], value), f"base weight {name} changed"

    registry = AdapterRegistry(tmp_path / "adapters")
    version = publish(model, trainer.processing_class, registry=registry, metrics={"steps": 3},
                      manifest_path=chat_dataset / "manifest.json")
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base, local_files_only=True),
                                         str(registry.path(version.version))).eval()
    model.eval()
    ids = torch.tensor([trainer.train_dataset[0]["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
        with reloaded.disable_adapter():  # and the adapter is what makes the difference
            assert not torch.equal(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_version_holds_weights_config_tokenizer_with_chat_template_metrics_and_manifest(trained, chat_dataset):
    from transformers import AutoTokenizer

    registry, result = trained
    assert registry.path(result.version) == result.path
    files = {p.name for p in result.path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "metrics.json", "dataset_manifest.json"} <= files
    config = json.loads((result.path / "adapter_config.json").read_text())
    options = tiny_lora_options()
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (options.rank, options.alpha, options.dropout)
    assert set(config["target_modules"]) == set(options.target_modules)
    assert AutoTokenizer.from_pretrained(result.path, local_files_only=True).chat_template == CHAT_TEMPLATE
    assert (result.path / "dataset_manifest.json").read_bytes() == (chat_dataset / "manifest.json").read_bytes()

    metrics = json.loads((result.path / "metrics.json").read_text())
    assert metrics == result.metrics
    assert metrics["steps"] == 40 and metrics["resumed_from_step"] == 0
    assert (metrics["device"], metrics["dtype"]) == ("cpu", "float32")
    assert metrics["tokens"] > 40 * 4 * 100 and metrics["tokens_per_second"] > 0 and metrics["seconds"] > 0
    assert metrics["final_loss"] < min(2.0, metrics["train_loss"])  # it learned the answers' shape
    assert not list(registry.root.glob(".*.partial"))


def test_a_run_cut_short_continues_from_its_checkpoint(tiny_base, chat_dataset, tmp_path):
    registry = AdapterRegistry(tmp_path / "adapters")
    work = tmp_path / "work"

    def run(dataset=chat_dataset, **changes):
        return finetune(dataset_dir=dataset, base_model=tiny_base, registry=registry,
                        options=tiny_lora_options(**changes), work_dir=work, progress=False).metrics

    first = run(max_steps=2, save_steps=2)
    assert (first["resumed_from_step"], first["steps"]) == (0, 2)
    [run_dir] = work.iterdir()
    assert (run_dir / "checkpoint-2" / "adapter_model.safetensors").is_file()

    # The same examples rebuilt into a new folder (the manifest says when) and the same options:
    # the Trainer starts from step 2.
    rebuilt = shutil.copytree(chat_dataset, tmp_path / "rebuilt")
    manifest = json.loads((rebuilt / "manifest.json").read_text())
    (rebuilt / "manifest.json").write_text(json.dumps({**manifest, "created_at": "later"}))
    resumed = run(rebuilt, max_steps=4, save_steps=2)
    assert (resumed["resumed_from_step"], resumed["steps"]) == (2, 4)
    assert resumed["tokens"] < first["tokens"] * 1.5  # only steps 3 and 4 were run
    assert [p.name for p in work.iterdir()] == [run_dir.name]

    other = run(max_steps=2, save_steps=2, rank=8)  # other options: a run of its own
    assert other["resumed_from_step"] == 0
    assert len(list(work.iterdir())) == 2
    assert [v.name for v in registry.versions()] == ["lorebot-v0001", "lorebot-v0002", "lorebot-v0003"]


def test_a_malformed_dataset_is_named_and_nothing_is_written(tiny_base, tmp_path):
    registry = AdapterRegistry(tmp_path / "adapters")
    examples = make_examples(3, seed=5)
    examples[1]["messages"] = examples[1]["messages"][:-1]  # no answer
    dataset = write_dataset(tmp_path / "dataset", examples, examples[:1])
    with pytest.raises(DatasetError, match=r"train\.jsonl:2: messages must end with an assistant answer"):
        finetune(dataset_dir=dataset, base_model=tiny_base, registry=registry, options=tiny_lora_options(),
                 work_dir=tmp_path / "work", progress=False)
    (dataset / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="manifest.json is missing"):
        finetune(dataset_dir=dataset, base_model=tiny_base, registry=registry, options=tiny_lora_options(),
                 work_dir=tmp_path / "work", progress=False)
    assert registry.versions() == [] and not list(registry.root.glob("*"))


def test_a_base_model_without_a_chat_template_is_refused(tiny_base, chat_dataset, tmp_path):
    plain = shutil.copytree(tiny_base, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match="no chat template"):
        build_trainer(dataset_dir=chat_dataset, base_model=str(plain), options=tiny_lora_options(),
                      output_dir=tmp_path / "work")
