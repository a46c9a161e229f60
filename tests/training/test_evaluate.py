"""The promotion gate: a trained adapter beats the base model, a worse one is refused with a reason,
the loss is the answers' alone, and citations are checked against the passages each prompt showed."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from tests.training.tiny_model import make_examples
from training.evaluate import (
    REPORT_FILE,
    GateOptions,
    citation_validity,
    citations_valid,
    encode_example,
    evaluate_candidate,
    heldout_loss,
    passage_count,
)


@pytest.mark.parametrize(("generation", "passages", "reference", "valid"), [
    ("Ten days [1].", 3, "Ten days [2].", True),
    ("Ten days [1][3], and more [2].", 3, "Ten days [1].", True),
    ("Ten days [4].", 3, "Ten days [1].", False),  # there is no passage 4
    ("Ten days [0].", 3, "Ten days [1].", False),
    ("Ten days [1] and [7].", 3, "Ten days [1].", False),  # one bad citation spoils the answer
    ("Ten days.", 3, "Ten days [1].", False),  # the reference cited: so should the answer
    ("The documents I can see don't answer this.", 3, "The documents I can see don't answer this.", True),
    ("Ten days [1].", 0, "No passages.", False),
    ("See [a] or [ 1 ] or [1, 2].", 2, "No citation here.", True),  # not [n] citations
])
def test_a_generation_is_valid_when_every_citation_names_a_passage_it_was_given(generation, passages, reference,
                                                                                valid):
    assert citations_valid(generation, passages=passages, reference=reference) is valid


def test_citation_validity_counts_passages_in_each_prompt():
    examples = make_examples(6, seed=9)
    counts = [passage_count(ex["messages"][1]["content"]) for ex in examples]
    assert set(counts) <= {2, 3, 4} and len(set(counts)) > 1
    references = [ex["messages"][-1]["content"] for ex in examples]
    generations = [f"Room Atlas [{n}]." for n in counts]  # the last passage: valid everywhere
    assert citation_validity(generations, passages=counts, references=references) == 1.0
    generations[0] = f"Room Atlas [{counts[0] + 1}]."  # one past the last
    generations[1] = "Room Atlas."  # no citation where the reference had one
    assert citation_validity(generations, passages=counts, references=references) == pytest.approx(4 / 6)
    assert citation_validity([], passages=[], references=[]) == 1.0


def test_the_loss_is_token_weighted_over_the_answers_only(tiny_base, chat_dataset):
    from transformers import AutoModelForCausalLM

    from training.finetune import load_tokenizer, read_chat_examples

    tokenizer = load_tokenizer(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, local_files_only=True).eval()
    examples = read_chat_examples(chat_dataset / "heldout.jsonl")[:5]
    encoded = [encode_example(tokenizer, ex, 512) for ex in examples]
    for (ids, labels), ex in zip(encoded, examples):
        answer = [t for t in labels if t != -100]
        assert tokenizer.decode(answer) == ex["messages"][-1]["content"] + tokenizer.eos_token + "\n"
        assert labels[: len(ids) - len(answer)] == [-100] * (len(ids) - len(answer))

    loss, tokens = heldout_loss(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=3)  # padded batches

    total, count = 0.0, 0
    with torch.inference_mode():
        for ids, labels in encoded:  # one at a time, with the model's own loss
            n = sum(t != -100 for t in labels[1:])
            total += float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss) * n
            count += n
    assert tokens == count
    assert loss == pytest.approx(total / count, rel=1e-5)


def test_the_gate_promotes_a_trained_adapter_over_the_base_model(tiny_base, trained, chat_dataset):
    _registry, result = trained
    report = evaluate_candidate(base_model=tiny_base, candidate=result.path, incumbent=None,
                                heldout=chat_dataset / "heldout.jsonl", options=GateOptions(generations=8),
                                progress=False)
    assert report.promote, report.reason
    assert report.incumbent is None and report.candidate == result.version
    assert report.candidate_loss < 0.5 * report.incumbent_loss
    assert report.candidate_perplexity == pytest.approx(math.exp(report.candidate_loss), rel=1e-4)
    assert report.examples == 16 and report.generations == 8 and report.citation_validity >= 0.9
    assert "below the base model's" in report.reason
    assert json.loads((result.path / REPORT_FILE).read_text()) == report.as_json()


def test_the_gate_refuses_a_worse_adapter_and_says_why(tiny_base, trained, chat_dataset, tmp_path):
    from safetensors.torch import load_file, save_file

    _registry, result = trained
    worse = shutil.copytree(result.path, tmp_path / "lorebot-v0099")
    (worse / REPORT_FILE).unlink(missing_ok=True)
    weights = load_file(worse / "adapter_model.safetensors")
    generator = torch.Generator().manual_seed(0)
    for name, value in weights.items():
        if ".lora_B." in name:  # what the adapter adds to the base model, scrambled
            weights[name] = torch.randn(value.shape, generator=generator) * value.abs().mean() * 3
    save_file(weights, worse / "adapter_model.safetensors")

    report = evaluate_candidate(base_model=tiny_base, candidate=worse, incumbent=result.path,
                                heldout=chat_dataset / "heldout.jsonl", options=GateOptions(generations=4),
                                progress=False)
    assert not report.promote
    assert report.incumbent == result.version
    assert report.candidate_loss > report.incumbent_loss
    assert f"lorebot-v0099's held-out loss {report.candidate_loss:.4f} is" in report.reason
    assert f"above {result.version}'s" in report.reason
    written = json.loads((worse / REPORT_FILE).read_text())
    assert written["promote"] is False and written["reason"] == report.reason


def test_an_adapter_no_better_than_the_incumbent_by_the_margin_is_refused(tiny_base, trained, chat_dataset):
    _registry, result = trained
    report = evaluate_candidate(base_model=tiny_base, candidate=result.path, incumbent=result.path,
                                heldout=chat_dataset / "heldout.jsonl",
                                options=GateOptions(generations=0, margin=0.02), progress=False)
    assert report.candidate_loss == report.incumbent_loss
    assert not report.promote
    assert "only 0.0% below" in report.reason and "needs 2.0%" in report.reason


def test_when_no_held_out_answer_fits_the_length_cap_the_gate_says_so(tiny_base, trained, chat_dataset):
    _registry, result = trained
    report = evaluate_candidate(base_model=tiny_base, candidate=result.path, incumbent=None,
                                heldout=chat_dataset / "heldout.jsonl",
                                options=GateOptions(generations=0, margin=0.0, max_seq_len=16), progress=False)
    assert not report.promote and report.examples == 0
    assert "no held-out answer fits in 16 tokens" in report.reason and "LOREBOT_TRAIN_MAX_SEQ_LEN" in report.reason
