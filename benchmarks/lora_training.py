"""LoRA training throughput of a realistically shaped model: tokens per second and model FLOPs utilisation.

    .venv/bin/python benchmarks/lora_training.py [--size 1b|tiny] [--seq-len 2048] [--steps N] [--batch-size B]

The requirement
    "LoRA training of a realistically shaped model (for example a 1B-parameter Llama configuration
    with random weights, bf16, sequence length 2048), reporting tokens per second and model FLOPs
    utilisation on a GPU (target ≥ 40% MFU on an H100/H200-class card), and running unchanged, at a
    small size, on CPU."

The setup
    A ``LlamaForCausalLM`` built from a config with random weights (nothing is downloaded):
    ``1b`` is Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads, 8 key/value heads,
    intermediate 8192, vocabulary 128256, untied output head), ``tiny`` a small model for the CPU
    (hidden 128, 2 layers, 4 heads, 2 key/value heads, intermediate 512, vocabulary 4096). The
    default size is ``1b`` on a GPU and ``tiny`` on the CPU. On a GPU the weights are bf16 and
    attention is FlashAttention 2 when the ``flash_attn`` package is installed, else PyTorch's SDPA
    (which picks its flash kernel for bf16); on the CPU everything is fp32 with SDPA.
    A peft LoRA adapter (rank ``--rank``, alpha 2×rank, dropout ``--lora-dropout``, 0.05 as lorebot
    trains) goes on every linear projection of every layer (q, k, v, o, gate, up, down); the base is
    frozen. The data are random token IDs (``--batch-size`` sequences of ``--seq-len`` tokens, no
    padding), the loss the model's causal-LM cross-entropy on every token; the optimiser AdamW
    (fused on a GPU) over the adapter's weights. The loop is plain PyTorch (forward, backward,
    optimiser step, zero grad): the HF Trainer's bookkeeping would be measured too otherwise.
    ``--gradient-checkpointing`` recomputes each layer's activations in the backward pass (less
    memory, about a third more compute that MFU does not count); ``--compile`` wraps the model in
    ``torch.compile``.

What is timed
    ``--warmup`` steps first (not counted: kernel selection, allocator growth, compilation), then
    ``--steps`` steps, each timed on the wall clock with ``torch.cuda.synchronize()`` before the
    clock is read (on a GPU). Tokens per second = batch × sequence length × steps / their total time.

Model FLOPs utilisation
    MFU = (model FLOPs per token × tokens per second) / the card's peak dense bf16 FLOP/s.
    Model FLOPs per token, after PaLM (Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with
    Pathways", appendix B: 6N + 12·L·H·Q·T for full training) and Narayanan et al. 2021
    ("Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", §5.1: the
    backward pass costs twice the forward, half for the input gradients and half for the weight
    gradients), adjusted for a frozen base:

        4·N_base + 6·N_lora + 12·L·H·Q·T

    - N_base: the weights of every matrix multiply (attention and MLP projections and the output
      head; the embedding is a lookup and is left out). Forward 2 FLOPs per weight, backward 2 for
      the input gradients; no weight gradients for frozen weights, hence 4 instead of 6.
    - N_lora: the adapter's weights, trained: 2 + 4 = 6 per weight.
    - 12·L·H·Q·T: attention scores and their weighted sum (L layers, H heads of size Q, context T),
      forward 4·L·H·Q·T and backward twice that; no weights, so nothing is saved by freezing. As in
      PaLM, the T×T matrices are counted whole, although the causal mask lets kernels skip about half.
    Recomputation under gradient checkpointing is not counted (MFU counts the model's FLOPs, not the
    hardware's). Peak dense bf16 FLOP/s by card: H100 SXM 989 T, H100 PCIe 756 T, H200 989 T,
    A100 312 T, L40S 362 T, L4 121 T, A10 125 T (NVIDIA's data sheets, without sparsity), read from
    ``torch.cuda.get_device_name()``; ``--peak-tflops`` overrides it. On the CPU MFU is "n/a".

Output
    A table, then one JSON line. ``target_met``: MFU ≥ 40% on a GPU; null on the CPU (the target is
    for H100/H200-class cards; the CPU run shows the program works, its tokens/s are for reference).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import emit_json, fmt, foreign_load, log, print_table, source_digests  # noqa: E402

BENCHMARK = "lora_training"
MEASURED = ("benchmarks/lora_training.py",)
TARGET_MFU = 0.40
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

SIZES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=128256),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=512, vocab_size=4096),
}

# Peak dense bf16 tensor-core FLOP/s (no sparsity), most specific name first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("A100", 312.0),
    ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The card's peak dense bf16 TFLOP/s, from its name; None when it is not in the table.

    >>> peak_tflops("NVIDIA H100 80GB HBM3"), peak_tflops("NVIDIA H100 PCIe"), peak_tflops("NVIDIA H200")
    (989.4, 756.0, 989.4)
    >>> peak_tflops("NVIDIA A100-SXM4-80GB"), peak_tflops("Some CPU")
    (312.0, None)
    """
    for key, value in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


@dataclass(frozen=True)
class FlopCount:
    base_matmul_params: int
    lora_params: int
    attention_per_token: int

    @property
    def per_token(self) -> int:
        return 4 * self.base_matmul_params + 6 * self.lora_params + self.attention_per_token


def count_flops(config, lora_params: int, seq_len: int) -> FlopCount:
    """Model FLOPs per trained token (see the module docstring).

    >>> from transformers import LlamaConfig
    >>> f = count_flops(LlamaConfig(**SIZES["1b"], tie_word_embeddings=False), lora_params=0, seq_len=2048)
    >>> f.base_matmul_params, f.attention_per_token, round(f.per_token / 1e9, 3)
    (1235746816, 805306368, 5.748)
    """
    h, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv = config.num_key_value_heads * head_dim
    attn = h * heads * head_dim + 2 * h * kv + heads * head_dim * h  # q, k, v, o
    mlp = 3 * h * config.intermediate_size  # gate, up, down
    base = layers * (attn + mlp) + h * config.vocab_size  # + the output head
    return FlopCount(base_matmul_params=base, lora_params=lora_params,
                     attention_per_token=12 * layers * heads * head_dim * seq_len)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import torch

    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b" if gpu else "tiny",
                        help="model shape (default: 1b on a GPU, tiny on the CPU)")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    parser.add_argument("--batch-size", type=int, default=4 if gpu else 1, help="sequences per step")
    parser.add_argument("--steps", type=int, default=20 if gpu else 5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha is twice it)")
    parser.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout, as lorebot trains")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the card's peak bf16 TFLOP/s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.seq_len, args.batch_size, args.steps, args.rank) < 1 or args.warmup < 0:
        parser.error("--seq-len, --batch-size, --steps and --rank must be at least 1, --warmup at least 0")
    return args


def build(args: argparse.Namespace, device: str):
    """The random-weight model with its LoRA adapter, on ``device``, and its config."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    gpu = device == "cuda"
    dtype = torch.bfloat16 if gpu else torch.float32
    attention = "sdpa"
    if gpu:
        with contextlib.suppress(ImportError):
            import flash_attn  # noqa: F401

            attention = "flash_attention_2"
    config = LlamaConfig(**SIZES[args.size], max_position_embeddings=max(args.seq_len, 2048),
                         tie_word_embeddings=False, use_cache=False, attn_implementation=attention)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=args.lora_dropout,
                      target_modules=list(PROJECTIONS), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    return model, config, dtype, model.config._attn_implementation


def run(args: argparse.Namespace) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    device_name = torch.cuda.get_device_name() if gpu else "CPU"
    log(f"building the {args.size} model on {device_name} …")
    model, config, dtype, attention = build(args, device)
    total = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    lora_params = sum(p.numel() for p in trainable)
    flops = count_flops(config, lora_params, args.seq_len)
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=gpu)
    step_fn = torch.compile(model) if args.compile else model

    generator = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, config.vocab_size, (args.batch_size, args.seq_len), generator=generator).to(device)
               for _ in range(4)]

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize()

    def step(i: int):
        ids = batches[i % len(batches)]
        loss = step_fn(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    log(f"{args.warmup} warm-up steps …")
    for i in range(args.warmup):
        step(i)
    sync()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    log(f"{args.steps} timed steps of {args.batch_size}×{args.seq_len} tokens …")
    with foreign_load() as other:
        for i in range(args.steps):
            sync()
            started = time.perf_counter()
            loss = step(args.warmup + i)
            sync()
            times.append(time.perf_counter() - started)
    tokens = args.batch_size * args.seq_len * args.steps
    seconds = sum(times)
    tokens_per_second = tokens / seconds
    achieved = flops.per_token * tokens_per_second / 1e12
    peak = args.peak_tflops or (peak_tflops(device_name) if gpu else None)
    mfu = achieved / peak if peak else None
    result = {
        "size": args.size, "device": device_name, "dtype": str(dtype).removeprefix("torch."), "attention": attention,
        "params": total, "base_matmul_params": flops.base_matmul_params, "lora_params": lora_params,
        "lora_rank": args.rank, "lora_dropout": args.lora_dropout, "target_modules": list(PROJECTIONS),
        "seq_len": args.seq_len, "batch_size": args.batch_size, "warmup_steps": args.warmup, "steps": args.steps,
        "gradient_checkpointing": args.gradient_checkpointing, "compile": args.compile,
        "step_s": {"p50": round(statistics.median(times), 4), "min": round(min(times), 4), "max": round(max(times), 4)},
        "tokens_per_second": round(tokens_per_second, 1),
        "flops_per_token": flops.per_token,
        "flops_formula": "4*N_base + 6*N_lora + 12*L*H*Q*T (PaLM appendix B, frozen base)",
        "achieved_tflops": round(achieved, 2 if gpu else 4),
        "peak_tflops": peak, "mfu": round(mfu, 4) if mfu is not None else "n/a",
        "final_loss": round(float(loss), 4) if loss is not None else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "other_processes_cpu_share": other["share"],
        "target": {"mfu": TARGET_MFU, "applies_to": "an H100/H200-class GPU"},
        "target_met": (mfu >= TARGET_MFU) if mfu is not None else None,
    }
    return result


def report_table(r: dict) -> Table:
    table = Table(title=f"LoRA training, {r['size']} Llama (random weights), {r['device']}, {r['dtype']}, "
                        f"{r['batch_size']}×{r['seq_len']} tokens per step, {r['steps']} steps timed after "
                        f"{r['warmup_steps']} warm-up")
    for column, justify in (("measure", "left"), ("value", "right"), ("target", "left")):
        table.add_column(column, justify=justify)
    millions = f"{r['params'] / 1e6:,.1f} M / {r['base_matmul_params'] / 1e6:,.1f} M / {r['lora_params'] / 1e6:,.2f} M"
    table.add_row("parameters (all / in matmuls / LoRA)", millions, "")
    table.add_row("LoRA", f"rank {r['lora_rank']}, dropout {r['lora_dropout']}, 7 projections × layer", "")
    yes = {True: "yes", False: "no"}
    table.add_row("attention / gradient checkpointing / compile",
                  f"{r['attention']} / {yes[r['gradient_checkpointing']]} / {yes[r['compile']]}", "")
    table.add_row("step time p50 (min–max) s",
                  f"{r['step_s']['p50']:.3f} ({r['step_s']['min']:.3f}–{r['step_s']['max']:.3f})", "")
    table.add_row("tokens per second", fmt(r["tokens_per_second"]), "reported")
    table.add_row("model FLOPs per token (G)", f"{r['flops_per_token'] / 1e9:.3f}", "4N + 6N_lora + 12LHQT")
    table.add_row("achieved TFLOP/s", f"{r['achieved_tflops']}",
                  f"peak {r['peak_tflops']:g}" if r["peak_tflops"] else "no peak known")
    if r["mfu"] == "n/a":
        table.add_row("MFU", "n/a", f"≥ {TARGET_MFU:.0%} on an H100/H200: not applicable on the CPU")
    else:
        verdict = "[green]met[/]" if r["target_met"] else "[red]not met[/]"
        table.add_row("MFU", f"{r['mfu']:.1%}", f"≥ {TARGET_MFU:.0%}: {verdict}")
    if r["peak_memory_gib"] is not None:
        table.add_row("peak GPU memory GiB", f"{r['peak_memory_gib']}", "")
    table.add_row("loss after the last step", f"{r['final_loss']}", "random data: about ln(vocabulary)")
    share = r["other_processes_cpu_share"]
    table.add_row("other processes' CPU share while timed", "–" if share != share else f"{share:.0%}", "")
    return table


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sources = source_digests(MEASURED)
    started = time.perf_counter()
    result = run(args)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_table(report_table(result))
    emit_json(BENCHMARK, result, sources=sources)
    return result


if __name__ == "__main__":
    main()
