"""SFT throughput of TRL's SFTTrainer: tokens per second and model FLOPs utilisation, by batching mode.

The SFT stage spends its time in one place, the trainer step, so this measures
exactly that on the shapes we train: randomly initialised Qwen2 models shaped
like Qwen2.5-0.5B and -1.5B (no weights are downloaded), fed prompt-completion
samples whose lengths follow the distilled set (a note of 300-1,500 tokens, a
trace of 100-900), with completion-only loss as `deepicd sft` uses it.

Modes:
  padded        TRL defaults: each batch padded to its longest sample
  padding-free  a batch is concatenated into one row (no pad tokens)
  packing       best-fit packing into max_length rows (implies padding-free)

Tokens/s counts real (non-pad) tokens of prompt and completion; MFU counts
6 x parameters FLOPs per token (forward + backward, attention FLOPs left out)
against the GPU's peak dense bf16 rate (--peak-tflops; H100 SXM 989). On a CPU
(--smoke) it runs the tiny model for a few steps, to check the harness only.

Run:  python benchmarks/bench_sft.py                      (GPU: 0.5B and 1.5B, every mode)
      python benchmarks/bench_sft.py --smoke              (CPU, tiny model, seconds)
      python benchmarks/bench_sft.py --sizes 1.5b --modes packing --steps 30 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time

from model_shapes import SHAPES  # noqa: E402 (benchmarks/ is on sys.path when a script here runs)

MODES = ("padded", "padding-free", "packing")
# Peak dense bf16 tensor FLOP/s by device name fragment (vendor datasheets).
PEAKS = {"H200": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "A100": 312e12}


def samples(count: int, vocab: int, prompt_range, completion_range, seed: int = 0) -> list[dict]:
    """Pre-tokenized prompt-completion rows: ids drawn at random, lengths like the distilled set."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        prompt, completion = rng.randint(*prompt_range), rng.randint(*completion_range)
        ids = [rng.randrange(10, vocab) for _ in range(prompt + completion)]
        rows.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * completion})
    return rows


def tokenizer_for(vocab: int):
    """The smallest tokenizer TRL accepts: it only needs pad and end-of-sequence ids (data is pre-tokenized)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def peak_flops(override_tflops: float | None) -> float | None:
    import torch

    if override_tflops:
        return override_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((value for fragment, value in PEAKS.items() if fragment in name), None)


def measure(size: str, mode: str, args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Qwen2Config, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    on_gpu = torch.cuda.is_available() and not args.smoke
    shape = SHAPES[size]
    config = Qwen2Config(**shape, max_position_embeddings=32768, rope_theta=1_000_000.0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.bfloat16 if args.precision == "bf16" and on_gpu else torch.float32,
        attn_implementation=args.attn,
    )
    parameters = sum(p.numel() for p in model.parameters())
    steps = args.warmup + args.steps
    # Enough rows that packing still has `batch` full rows for every step.
    rows = samples(steps * args.batch * (3 if mode == "packing" else 1) + args.batch, shape["vocab_size"],
                   args.prompt_tokens, args.completion_tokens)
    dataset = Dataset.from_list(rows)

    counted: list[int] = []
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            if on_gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            if on_gpu:
                torch.cuda.synchronize()
            times[-1] = time.perf_counter() - times[-1]

    class CountingTrainer(SFTTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            mask = inputs.get("attention_mask")
            counted.append(int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel()))
            return super().training_step(model, inputs, num_items_in_batch)

    sft_args = SFTConfig(
        output_dir=args.scratch,
        max_steps=steps,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        learning_rate=2e-5,
        lr_scheduler_type="constant",
        bf16=on_gpu,
        use_cpu=not on_gpu,
        gradient_checkpointing=not args.no_checkpointing,
        max_length=args.max_length,
        packing=mode == "packing",
        padding_free=mode == "padding-free",
        completion_only_loss=True,
        save_strategy="no",
        logging_steps=10_000,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    if mode == "padding-free":
        sft_args.max_length = None  # TRL truncates only when packing in this mode; samples are short enough
    trainer = CountingTrainer(model=model, args=sft_args, train_dataset=dataset, processing_class=tokenizer_for(shape["vocab_size"]),
                              callbacks=[Clock()])
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens = sum(counted[args.warmup:steps])
    seconds = sum(times[args.warmup:steps])
    rate = tokens / seconds
    peak = peak_flops(args.peak_tflops) if on_gpu else None
    result = {
        "size": size, "mode": mode, "parameters": parameters, "batch": args.batch, "max_length": args.max_length,
        "steps_timed": args.steps, "tokens_per_step": round(tokens / args.steps), "tokens_per_s": round(rate),
        "mfu": round(6 * parameters * rate / peak, 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if on_gpu else None,
    }
    del trainer, model
    if on_gpu:
        torch.cuda.empty_cache()
    return result


def environment() -> dict:
    import torch
    import transformers
    import trl

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    return {"device": device, "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SHAPES), default=None, help="model shapes (default: 0.5b 1.5b; tiny with --smoke)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="batching modes to compare")
    parser.add_argument("--batch", type=int, default=8, help="samples (rows when packing) per step")
    parser.add_argument("--max-length", type=int, default=2048, help="packing row length / truncation length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--prompt-tokens", type=int, nargs=2, default=(300, 1500), metavar=("MIN", "MAX"))
    parser.add_argument("--completion-tokens", type=int, nargs=2, default=(100, 900), metavar=("MIN", "MAX"))
    parser.add_argument("--precision", choices=("bf16-mixed", "bf16"), default="bf16-mixed", help="fp32 weights + bf16 compute, or bf16 weights")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2 if installed)")
    parser.add_argument("--no-checkpointing", action="store_true", help="turn gradient checkpointing off")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s for MFU (default: by GPU name)")
    parser.add_argument("--smoke", action="store_true", help="CPU harness check on the tiny shape with short samples")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import tempfile

    if args.smoke:
        args.sizes = args.sizes or ["tiny"]
        args.steps, args.warmup, args.batch, args.max_length = min(args.steps, 3), 1, 2, 256
        args.prompt_tokens, args.completion_tokens = (40, 120), (20, 60)
    args.sizes = args.sizes or ["0.5b", "1.5b"]
    env = environment()
    print(f"# SFT throughput on {env['device']} (torch {env['torch']}, transformers {env['transformers']}, trl {env['trl']})")
    print("| model | params | mode | tokens/step | tokens/s | MFU | peak GB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = scratch
        for size in args.sizes:
            for mode in args.modes:
                row = measure(size, mode, args)
                results.append(row)
                mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "–"
                memory = row["peak_memory_gb"] if row["peak_memory_gb"] is not None else "–"
                print(f"| {size} | {row['parameters'] / 1e6:,.0f}M | {mode} | {row['tokens_per_step']:,} | "
                      f"{row['tokens_per_s']:,} | {mfu} | {memory} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"environment": env, "settings": {k: v for k, v in vars(args).items() if k != "scratch"},
                       "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
