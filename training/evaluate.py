"""The promotion gate: is a candidate adapter better than the one in service (or the base model)?

On the held-out examples it measures, for the candidate and for the incumbent, the loss of the
reference answer given the prompt (mean negative log-likelihood per answer token, the prompt laid
out with the chat template, token-weighted across examples) and its perplexity; and it checks that
the candidate's greedy answers cite only passages they were given. The candidate is promoted only
if its loss is lower by at least ``margin`` (a fraction of the incumbent's) and enough of its
answers cite correctly. Either way ``eval_report.json`` is written into the candidate's folder.

The base model is loaded once; the candidate and the incumbent are adapters on it, switched in
place (peft), and the base model alone is the adapters switched off.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.errors import DatasetError
from training.finetune import device_and_dtype, load_base_model, load_tokenizer, prompt_completion, read_chat_examples

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REPORT_FILE = "eval_report.json"
CANDIDATE, INCUMBENT = "candidate", "incumbent"

_CITATION = re.compile(r"\[(\d+)\]")
_PASSAGE = re.compile(r"<passage n=")


@dataclass(frozen=True)
class GateOptions:
    margin: float = 0.02  # candidate loss must be at least this fraction lower than the incumbent's
    max_examples: int = 200
    generations: int = 16
    max_new_tokens: int = 128
    min_citation_validity: float = 0.9  # share of candidate generations whose [n] all point at passages in the prompt
    max_seq_len: int = 2048  # longer examples are cut at the end, as in training
    batch_size: int = 4


@dataclass(frozen=True)
class GateReport:
    candidate: str
    incumbent: str | None  # None: the base model
    candidate_loss: float
    incumbent_loss: float
    candidate_perplexity: float
    incumbent_perplexity: float
    citation_validity: float
    examples: int
    promote: bool
    reason: str
    answer_tokens: int = 0
    generations: int = 0
    margin: float = 0.0
    seconds: float = 0.0
    invalid_generations: tuple[dict, ...] = field(default=())  # a few, for a person to read

    def as_json(self) -> dict:
        data = asdict(self)
        data["invalid_generations"] = list(self.invalid_generations)
        return data


# --------------------------------------------------------------------------- citations (pure)


def passage_count(user_turn: str) -> int:
    """How many fenced passages a user turn shows the model.

    >>> passage_count('<passages>\\n<passage n="1" title="a">x</passage>\\n<passage n="2">y</passage>\\n</passages>')
    2
    """
    return len(_PASSAGE.findall(user_turn))


def cited(text: str) -> list[int]:
    """The passage numbers a text cites as ``[n]``, in order.

    >>> cited("Ten days [1][3], see [12]. Not [a] or [ 2 ].")
    [1, 3, 12]
    """
    return [int(n) for n in _CITATION.findall(text)]


def citations_valid(generation: str, *, passages: int, reference: str) -> bool:
    """Every ``[n]`` of the generation names a passage it was given (1..passages); a generation
    that cites nothing is valid only if the reference answer cites nothing either.

    >>> citations_valid("Yes [2].", passages=2, reference="Yes [1].")
    True
    >>> citations_valid("Yes [3].", passages=2, reference="Yes [1].")
    False
    >>> citations_valid("Yes.", passages=2, reference="Yes [1].")
    False
    >>> citations_valid("The documents I can see don't answer this.", passages=2, reference="They don't say.")
    True
    """
    numbers = cited(generation)
    if not numbers:
        return not cited(reference)
    return all(1 <= n <= passages for n in numbers)


def citation_validity(generations: Sequence[str], *, passages: Sequence[int], references: Sequence[str]) -> float:
    """The share of generations whose citations are valid (1.0 when there is nothing to check).

    >>> citation_validity(["A [1].", "B [4].", "C.", "D."], passages=[3, 3, 3, 3],
    ...                   references=["A [1].", "B [2].", "C [1].", "D."])
    0.5
    """
    if not generations:
        return 1.0
    valid = [citations_valid(g, passages=p, reference=r)
             for g, p, r in zip(generations, passages, references, strict=True)]
    return sum(valid) / len(valid)


def decide(*, candidate: str, incumbent: str | None, candidate_loss: float, incumbent_loss: float,
           citation_validity: float, generations: int, options: GateOptions) -> tuple[bool, str]:
    """Promote or not, and why, in words a person can act on.

    >>> decide(candidate="v2", incumbent=None, candidate_loss=1.0, incumbent_loss=2.0, citation_validity=1.0,
    ...        generations=4, options=GateOptions())
    (True, "v2's held-out loss 1.0000 is 50.0% below the base model's 2.0000 (needs 2.0%); 4/4 answers cite only passages they were given")
    >>> decide(candidate="v2", incumbent="v1", candidate_loss=1.1, incumbent_loss=1.0, citation_validity=0.5,
    ...        generations=4, options=GateOptions())
    (False, "v2's held-out loss 1.1000 is 10.0% above v1's 1.0000 (needs 2.0% below); only 2/4 answers cite only passages they were given (needs 90%)")
    """
    against = incumbent or "the base model"
    gain = (incumbent_loss - candidate_loss) / incumbent_loss if incumbent_loss > 0 else float("-inf")
    loss_ok = math.isfinite(candidate_loss) and gain >= options.margin
    cites_ok = citation_validity >= options.min_citation_validity
    if gain >= 0:
        change = f"{gain:.1%} below" if loss_ok else f"only {gain:.1%} below"
        needs = f"needs {options.margin:.1%}"
    else:
        change, needs = f"{-gain:.1%} above", f"needs {options.margin:.1%} below"
    loss_text = (f"{candidate}'s held-out loss {candidate_loss:.4f} is {change} {against}'s "
                 f"{incumbent_loss:.4f} ({needs})")
    valid = round(citation_validity * generations)
    if generations == 0:
        cite_text = "citations not checked (no generations asked for)"
    elif cites_ok:
        cite_text = f"{valid}/{generations} answers cite only passages they were given"
    else:
        cite_text = (f"only {valid}/{generations} answers cite only passages they were given "
                     f"(needs {options.min_citation_validity:.0%})")
    return loss_ok and cites_ok, f"{loss_text}; {cite_text}"


# --------------------------------------------------------------------------- measuring


def encode_example(tokenizer: PreTrainedTokenizerBase, example: dict, max_seq_len: int) -> tuple[list[int], list[int]]:
    """Input IDs and labels of one example as training lays them out: the chat template over prompt
    and answer, labels -100 on the prompt (where the two renderings still agree), cut at ``max_seq_len``."""
    pair = prompt_completion(example)
    prompt = _ids(tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, tokenize=True))
    full = _ids(tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=True))
    start = 0
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    labels = [-100] * start + full[start:]
    return full[:max_seq_len], labels[:max_seq_len]


def heldout_loss(model: Any, encoded: Sequence[tuple[list[int], list[int]]], *, pad_token_id: int,
                 batch_size: int = 4, progress: Any = None) -> tuple[float, int]:
    """Mean negative log-likelihood per answer token (token-weighted across examples), and the token count."""
    import torch

    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths share a batch
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start:start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, lab) in enumerate(batch):
                input_ids[row, :len(ids)] = torch.tensor(ids)
                labels[row, :len(lab)] = torch.tensor(lab)
                mask[row, :len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            targets = labels[:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total += float(nll)
            tokens += int((targets != -100).sum())
            if progress is not None:
                progress.update(len(batch))
    return (total / tokens if tokens else float("nan")), tokens


def generate_answers(model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[list[dict]], *,
                     max_new_tokens: int, progress: Any = None) -> list[str]:
    """Greedy answers to chat prompts, special tokens dropped."""
    import torch

    device = next(model.parameters()).device
    answers = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))
            input_ids = torch.tensor([ids], device=device)
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            answers.append(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip())
            if progress is not None:
                progress.update(1)
    return answers


# --------------------------------------------------------------------------- the gate


def evaluate_candidate(*, base_model: str, candidate: Path, incumbent: Path | None, heldout: Path,
                       options: GateOptions = GateOptions(), progress: bool = True) -> GateReport:
    """Compare ``candidate`` with ``incumbent`` (None: the base model) on ``heldout`` and write
    ``eval_report.json`` into the candidate's folder, promoted or not."""
    from peft import PeftModel
    from tqdm.auto import tqdm

    started = time.perf_counter()
    candidate, incumbent = Path(candidate), (Path(incumbent) if incumbent is not None else None)
    examples = read_chat_examples(Path(heldout))[: options.max_examples]
    if not examples:
        raise DatasetError(f"{heldout} holds no held-out examples: nothing to evaluate on")
    device, dtype = device_and_dtype()
    tokenizer = load_tokenizer(candidate)
    model = PeftModel.from_pretrained(load_base_model(base_model, dtype), str(candidate), adapter_name=CANDIDATE)
    if incumbent is not None:
        model.load_adapter(str(incumbent), adapter_name=INCUMBENT)
    model.to(device).eval()

    encoded = [e for e in (encode_example(tokenizer, ex, options.max_seq_len) for ex in examples)
               if any(label != -100 for label in e[1])]
    asked = examples[: options.generations]
    work = 2 * len(encoded) + len(asked)
    with tqdm(total=work, desc="evaluating", unit="ex", file=sys.stderr,
              disable=not (progress and sys.stderr.isatty())) as bar:
        model.set_adapter(CANDIDATE)
        candidate_loss, tokens = heldout_loss(model, encoded, pad_token_id=tokenizer.pad_token_id,
                                              batch_size=options.batch_size, progress=bar)
        generations = generate_answers(model, tokenizer, [prompt_completion(ex)["prompt"] for ex in asked],
                                       max_new_tokens=options.max_new_tokens, progress=bar)
        if incumbent is not None:
            model.set_adapter(INCUMBENT)
            incumbent_loss, _ = heldout_loss(model, encoded, pad_token_id=tokenizer.pad_token_id,
                                             batch_size=options.batch_size, progress=bar)
        else:
            with model.disable_adapter():
                incumbent_loss, _ = heldout_loss(model, encoded, pad_token_id=tokenizer.pad_token_id,
                                                 batch_size=options.batch_size, progress=bar)

    passages = [passage_count(_last_user_turn(ex)) for ex in asked]
    references = [ex["messages"][-1]["content"] for ex in asked]
    validity = citation_validity(generations, passages=passages, references=references)
    invalid = [{"id": ex.get("id"), "passages": p, "generation": g[:500]}
               for ex, p, g, r in zip(asked, passages, generations, references)
               if not citations_valid(g, passages=p, reference=r)][:3]
    promote, reason = decide(candidate=candidate.name, incumbent=incumbent.name if incumbent else None,
                             candidate_loss=candidate_loss, incumbent_loss=incumbent_loss,
                             citation_validity=validity, generations=len(generations), options=options)
    if not encoded:  # "nan is inf% above nan" would say nothing useful
        reason = (f"no held-out answer fits in {options.max_seq_len} tokens (the passages before it fill them): "
                  "there is no loss to compare; raise LOREBOT_TRAIN_MAX_SEQ_LEN")
    report = GateReport(
        candidate=candidate.name, incumbent=incumbent.name if incumbent else None,
        candidate_loss=round(candidate_loss, 6), incumbent_loss=round(incumbent_loss, 6),
        candidate_perplexity=round(_perplexity(candidate_loss), 4),
        incumbent_perplexity=round(_perplexity(incumbent_loss), 4),
        citation_validity=round(validity, 4), examples=len(encoded), promote=promote, reason=reason,
        answer_tokens=tokens, generations=len(generations), margin=options.margin,
        seconds=round(time.perf_counter() - started, 3), invalid_generations=tuple(invalid),
    )
    write_report(candidate / REPORT_FILE, report)
    return report


def write_report(path: Path, report: GateReport) -> None:
    """``eval_report.json``, replaced at once (a reader never sees half of it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".eval_report.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(report.as_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0)) if math.isfinite(loss) else float("inf")


def _last_user_turn(example: dict) -> str:
    users = [m["content"] for m in example["messages"] if m.get("role") == "user"]
    return users[-1] if users else ""


def _ids(encoded: Any) -> list[int]:
    """Token IDs from ``apply_chat_template(tokenize=True)``, a list or (transformers 5) a BatchEncoding."""
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return list(ids)
