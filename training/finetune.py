"""LoRA fine-tuning on the chat dataset: a new adapter version in the registry.

TRL's ``SFTTrainer`` trains a peft LoRA adapter on the examples in prompt–completion form (the
prompt is every message but the last, the completion is the assistant's answer), so the loss falls
on the answer tokens only: the prompt's labels are -100. The base model is frozen; bf16 on a GPU
that supports it, fp32 otherwise.

Checkpoints go in ``work_dir``, in a folder keyed by the training examples (the bytes of
``train.jsonl``: the manifest also records when it was built), the base model and the options, so
a run that was cut short continues from its last checkpoint when it is started again on the same
examples with the same options, even from a rebuilt dataset folder. ``max_steps`` (where to stop)
and ``save_steps`` are not part of the key: a run stopped at ``max_steps`` continues when asked
for more.

The version written to the registry holds the adapter (``adapter_config.json``,
``adapter_model.safetensors``), the tokenizer with its chat template, ``metrics.json`` and a copy of
the dataset's manifest (``dataset_manifest.json``). It appears all at once or not at all.

torch, transformers, peft and TRL are imported when training starts, not with this module: the
settings that build :class:`LoraOptions` must stay quick to load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.errors import DatasetError, LorebotError
from training.registry import AdapterRegistry

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTTrainer

MANIFEST = "manifest.json"
TRAIN_FILE = "train.jsonl"
METRICS_FILE = "metrics.json"
DATASET_MANIFEST_FILE = "dataset_manifest.json"
# Options that say where a run stops or how often it checkpoints, not what it learns.
_NOT_IN_RUN_KEY = ("max_steps", "save_steps")


class TrainingError(LorebotError):
    """The base model or its tokenizer cannot be used for training, or training failed."""


@dataclass(frozen=True)
class LoraOptions:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation: int = 1
    max_seq_len: int = 2048
    seed: int = 0
    max_steps: int = -1  # > 0: stop after this many optimizer steps (overrides epochs)
    save_steps: int = 50  # a checkpoint every this many steps, and at the end
    gradient_checkpointing: bool | None = None  # None: on a GPU yes (memory), on the CPU no (speed)


@dataclass(frozen=True)
class TrainResult:
    version: str
    path: Path
    metrics: dict  # train_loss, steps, tokens, seconds, tokens_per_second, device, dtype, …


# --------------------------------------------------------------------------- the dataset


def read_chat_examples(path: Path) -> list[dict]:
    """The examples of a ``.jsonl`` chat file, each checked to end with an assistant message.

    :class:`DatasetError` names the file and line of anything malformed."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    examples = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                messages = row["messages"]
                ok = (isinstance(messages, list) and len(messages) >= 2
                      and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
                      and messages[-1].get("role") == "assistant")
            except (ValueError, KeyError, TypeError) as e:
                raise DatasetError(f"{path}:{number}: not a chat example ({e})") from e
            if not ok:
                raise DatasetError(f"{path}:{number}: messages must end with an assistant answer after a prompt")
            examples.append(row)
    return examples


def prompt_completion(example: dict) -> dict:
    """A chat example as TRL's conversational prompt–completion pair: the loss falls on the completion.

    >>> prompt_completion({"id": "a", "messages": [{"role": "user", "content": "Q"},
    ...                                            {"role": "assistant", "content": "A [1]"}]})
    {'prompt': [{'role': 'user', 'content': 'Q'}], 'completion': [{'role': 'assistant', 'content': 'A [1]'}]}
    """
    messages = [{"role": m["role"], "content": m["content"]} for m in example["messages"]]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def run_key(train_data: bytes, base_model: str, options: LoraOptions) -> str:
    """The checkpoint folder's name: same examples, base model and options → same folder (resumable).

    >>> run_key(b"{}", "m", LoraOptions()) == run_key(b"{}", "m", LoraOptions(max_steps=9, save_steps=3))
    True
    >>> run_key(b"{}", "m", LoraOptions()) == run_key(b"{}", "m", LoraOptions(rank=8))
    False
    """
    identity = {k: v for k, v in asdict(options).items() if k not in _NOT_IN_RUN_KEY}
    text = json.dumps({"train": hashlib.sha256(train_data).hexdigest(), "base_model": base_model,
                       "options": identity}, sort_keys=True, default=list)
    return "run-" + hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- model and device


def device_and_dtype() -> tuple[str, Any]:
    """``("cuda", torch.bfloat16)`` on a GPU with bf16, else the GPU or CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return "cpu", torch.float32


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a base model or adapter folder; it must have a chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot load the tokenizer of {source}: {e}") from e
    if not tokenizer.chat_template:
        raise TrainingError(f"the tokenizer of {source} has no chat template: lorebot trains and serves chat models")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(base_model: str, dtype: Any) -> PreTrainedModel:
    """The base model, from a local folder or the Hugging Face cache: nothing is downloaded."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot load the base model {base_model}: {e}") from e


# --------------------------------------------------------------------------- training


def build_trainer(*, dataset_dir: Path, base_model: str, options: LoraOptions, output_dir: Path,
                  progress: bool = False) -> SFTTrainer:
    """The ``SFTTrainer`` that :func:`finetune` runs: base model with a fresh LoRA adapter, the
    training examples tokenized with the chat template, labels -100 outside the answers."""
    from datasets import Dataset, are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from peft import LoraConfig
    from transformers import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    examples = read_chat_examples(Path(dataset_dir) / TRAIN_FILE)
    if not examples:
        raise DatasetError(f"{Path(dataset_dir) / TRAIN_FILE} holds no examples")
    device, dtype = device_and_dtype()
    tokenizer = load_tokenizer(base_model)
    model = load_base_model(base_model, dtype)
    checkpointing = device == "cuda" if options.gradient_checkpointing is None else options.gradient_checkpointing
    config = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
        max_length=options.max_seq_len,
        completion_only_loss=True,
        seed=options.seed,
        data_seed=options.seed,
        bf16=str(dtype) == "torch.bfloat16",
        fp16=False,
        use_cpu=device == "cpu",
        activation_checkpointing=checkpointing,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=1,  # resuming needs the last one only
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=device == "cuda",
    )
    lora = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                      target_modules=list(options.target_modules), bias="none", task_type="CAUSAL_LM")
    quiet = not are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()  # the tokenizing bars of a few hundred examples say nothing
    train = Dataset.from_list([prompt_completion(e) for e in examples])
    try:
        trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer,
                             peft_config=lora)
    finally:
        if quiet:
            enable_progress_bars()
    # The Trainer prints its logs to stdout (lorebot's --json output goes there): only our bar, on stderr.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress and sys.stderr.isatty():
        trainer.add_callback(_progress_bar())
    return trainer


def finetune(*, dataset_dir: Path, base_model: str, registry: AdapterRegistry, options: LoraOptions = LoraOptions(),
             work_dir: Path, progress: bool = True) -> TrainResult:
    """Train a LoRA adapter on ``dataset_dir/train.jsonl`` and write it to ``registry`` as a new version.

    Resumes from the last checkpoint of an earlier run with the same dataset, base model and options.
    ``progress`` shows a bar on stderr when it is a terminal; the one-line summary is the caller's
    (from the returned metrics)."""
    from transformers.trainer_utils import get_last_checkpoint

    dataset_dir = Path(dataset_dir)
    manifest_path = dataset_dir / MANIFEST
    if not manifest_path.is_file():
        raise DatasetError(f"{manifest_path} is missing: not a dataset folder")
    train_path = dataset_dir / TRAIN_FILE
    if not train_path.is_file():
        raise DatasetError(f"{train_path} is missing")
    train_data = train_path.read_bytes()
    run_dir = Path(work_dir) / run_key(train_data, base_model, options)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "run.json",
                {"dataset": str(dataset_dir), "base_model": base_model, "options": asdict(options)})

    trainer = build_trainer(dataset_dir=dataset_dir, base_model=base_model, options=options, output_dir=run_dir,
                            progress=progress)
    checkpoint = get_last_checkpoint(str(run_dir)) if any(run_dir.glob("checkpoint-*")) else None
    start = _train_start()
    trainer.add_callback(start)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started

    state = trainer.state
    steps_now = state.global_step - start.step
    tokens = int(state.num_input_tokens_seen - start.tokens)
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    device = str(trainer.args.device)
    metrics = {
        # The mean loss of this call's steps; a run found already complete reports its last logged loss.
        "train_loss": round(float(output.training_loss if steps_now > 0 or not losses else losses[-1]), 6),
        "final_loss": round(float(losses[-1]), 6) if losses else None,
        "steps": int(state.global_step),
        "resumed_from_step": int(start.step),  # where the Trainer started: 0, or the checkpoint's step
        "epochs": round(float(state.epoch or 0.0), 4),
        "examples": len(trainer.train_dataset),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "device": device if device == "cpu" else f"{device} ({_gpu_name()})",
        "dtype": str(trainer.model.get_base_model().dtype).removeprefix("torch."),  # the base's; LoRA's is fp32
        "base_model": base_model,
        "dataset": str(dataset_dir),
        "train_sha256": hashlib.sha256(train_data).hexdigest(),
        "options": {**asdict(options), "target_modules": list(options.target_modules)},
        "run_dir": str(run_dir),
    }
    return publish(trainer.model, trainer.processing_class, registry=registry, metrics=metrics,
                   manifest_path=manifest_path)


def publish(model: Any, tokenizer: PreTrainedTokenizerBase, *, registry: AdapterRegistry, metrics: dict,
            manifest_path: Path) -> TrainResult:
    """Write a complete adapter version into the registry (all of it, or nothing)."""
    name, partial = registry.reserve()
    try:
        model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        _write_json(partial / METRICS_FILE, metrics)
        shutil.copyfile(manifest_path, partial / DATASET_MANIFEST_FILE)
        path = registry.commit(name, partial)
    except BaseException:
        registry.discard(partial)
        raise
    return TrainResult(version=name, path=path, metrics=metrics)


def _progress_bar():
    """A Trainer callback drawing a tqdm bar on stderr: one tick per optimizer step, the latest loss."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class ProgressBar(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                            file=sys.stderr, dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return ProgressBar()


def _train_start():
    """A Trainer callback noting the step and token count training starts from (after a resume)."""
    from transformers import TrainerCallback

    class TrainStart(TrainerCallback):
        step, tokens = 0, 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.step, self.tokens = state.global_step, state.num_input_tokens_seen

    return TrainStart()


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
