"""Every GPU figure deepicd still owes, from one prepared script: one JSON and one Markdown table.

Why one script: GPU time comes in short, scarce loans (minutes, all tries
together), so everything to be measured on the GPU is prepared and tested here
on the CPU, then run once, in at most about eight minutes, on one H200:

  matmul_peak   a few large bf16 matmuls: what this GPU really sustains
  correctness   the tiny model's SFT loss (before and after one AdamW step) and
                a greedy generation agree between the CPU and the GPU in fp32
  sft           tokens/s and MFU of `deepicd sft`'s own trainer settings
                (`deepicd.train.sft.build_sft_config` from a shipped preset) next
                to TRL's SFTTrainer defaults, on random-init Qwen2 models shaped
                like Qwen2.5-0.5B and -1.5B, on samples shaped like distilled
                traces (~1.3k prompt + ~0.7k completion tokens, random ids)
  generation    the transformers backend's default path against a naive batched
                `model.generate`, greedy, with the outputs checked token by token
  grpo          one step of `deepicd train-grpo --backend trl` (deepicd's
                GRPOConfig mapping, dataset and reward functions), split into
                generation, reward and the rest (log-probs, loss, backward, optimizer)

Each section is guarded on its own (an error is recorded, the others still run)
and has a share of the time budget; the JSON and the table are rewritten after
every section, so a run cut short still leaves what it measured. The GPU image
may lack trl, datasets, omegaconf or simple-icd-10-cm: a section that needs a
missing module is skipped with the reason (`--without` rehearses that on a full
install). No weights are downloaded: the models are random-init, the tokenizer a
word-level one built here whose vocabulary covers every model id, so decoded text
compares token for token.

    python benchmarks/gpu_check.py --out $OUT          # the GPU run (default --out: $OUT, else ./gpu-check)
    python benchmarks/gpu_check.py --tiny --out /tmp/gc  # the whole script on the CPU in seconds
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import gc
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The GPU machine runs a copy of the working tree, where deepicd is not installed.
sys.path.insert(0, str(ROOT / "src"))

from model_shapes import SHAPES  # noqa: E402 (benchmarks/ is on sys.path when a script here runs)

NOMINAL_PEAK_TFLOPS = 790.0  # dense bf16 figure the project's MFU numbers are stated against (docs/benchmarks.md)
MFU_GOAL = 0.35  # on the 1.5B shape, through deepicd's SFT path
LOSS_TOLERANCE = 1e-4  # relative CPU/GPU difference of the fp32 SFT loss
# Figures measured before on one H100 (REFERENCE §10), printed beside ours for context, never as ours.
BASELINES = {
    "sft": "H100, TRL defaults, 0.5B shape: 12.2k tokens/s (4.6% MFU)",
    "generation": "H100, naive generate batch 64, 353-token prompts, 256 new tokens: 1,068 tokens/s",
    "grpo": "H100, TRL GRPOTrainer, 32 completions x 256 tokens, transformers generation: 6.8-7.2 s/step",
}
SECTIONS = ("matmul_peak", "correctness", "sft", "generation", "grpo")
# What each section imports; a missing one turns the section into a skip that names it.
REQUIREMENTS = {
    "matmul_peak": ("torch",),
    "correctness": ("torch", "transformers"),
    "sft": ("torch", "transformers", "trl", "datasets", "deepicd.train.sft"),
    "generation": ("torch", "transformers", "deepicd.generate.transformers_backend", "deepicd.prompts.task"),
    "grpo": ("torch", "transformers", "trl", "datasets", "pyarrow", "deepicd.train.grpo_trl",
             "deepicd.rewards.trl_entry"),
}
# Share of the total budget per section: SFT runs four trainings, generation two 65k-token passes.
WEIGHTS = {"matmul_peak": 0.03, "correctness": 0.05, "sft": 0.42, "generation": 0.31, "grpo": 0.19}
VERSIONED = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "tokenizers", "omegaconf",
             "simple_icd_10_cm")


@dataclass
class Plan:
    """Sizes of every section: the GPU run's, or `--tiny`'s few tokens and steps."""

    tiny: bool
    budget_s: float = 420.0
    matmul_sizes: tuple = (4096, 8192, 16384)
    matmul_iterations: int = 20
    correctness_rows: int = 4
    correctness_tokens: int = 128
    correctness_new_tokens: int = 32
    sft_sizes: tuple = ("0.5b", "1.5b")
    sft_preset: str = "qwen2.5-7b"
    sft_overrides: list = field(default_factory=list)
    sft_prompt_tokens: tuple = (1100, 1500)  # uniform range; mean 1.3k
    sft_completion_tokens: tuple = (500, 900)  # mean 0.7k
    sft_timed_rows: int = 64  # samples per timed part of a run (after one warm-up optimizer step)
    gen_size: str = "0.5b"
    gen_prompts: int = 256
    gen_prompt_tokens: int = 350  # the task prompt alone is ~240 tokens of the word-level tokenizer
    gen_new_tokens: int = 256
    gen_naive_batch: int = 64
    grpo_size: str = "0.5b"
    grpo_prompts: int = 4
    grpo_generations: int = 8
    grpo_completion_tokens: int = 256
    grpo_prompt_tokens: int = 350
    grpo_micro_batch: int = 8
    grpo_timed_steps: int = 3
    peak_tflops: float = NOMINAL_PEAK_TFLOPS
    device: str = "auto"


def tiny_plan(plan: Plan) -> Plan:
    """The same sections at sizes a 2-core CPU runs in seconds: the harness is checked, not the speed."""
    return dataclasses.replace(
        plan, budget_s=min(plan.budget_s, 120.0), matmul_sizes=(128, 256), matmul_iterations=5,
        correctness_rows=2, correctness_tokens=32, correctness_new_tokens=8,
        sft_sizes=("tiny",), sft_prompt_tokens=(24, 40), sft_completion_tokens=(8, 16), sft_timed_rows=4,
        sft_overrides=["precision=fp32", "per_device_batch_size=2", "batch_size=4", "dataloader_num_workers=0",
                       "dataset_num_proc=1", *plan.sft_overrides],
        gen_size="tiny", gen_prompts=6, gen_prompt_tokens=256, gen_new_tokens=6, gen_naive_batch=4,
        grpo_size="tiny", grpo_prompts=2, grpo_generations=2, grpo_completion_tokens=6, grpo_prompt_tokens=256,
        grpo_micro_batch=2, grpo_timed_steps=1,
    )


# -- rehearsing a smaller image ------------------------------------------------------------------


def hide_modules(names) -> None:
    """`--without`: rehearse on a full install the skips the GPU image's missing packages cause.

    A `None` entry in `sys.modules` is Python's own way to make a package
    unimportable: `import` fails and `importlib.util.find_spec` answers None,
    exactly as for a package that is not installed (libraries probe both ways).
    """
    for name in names:
        sys.modules[name] = None


def missing_requirement(modules) -> str | None:
    """The first module of `modules` that does not import, with the reason, or None when all do."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an import can fail with more than ImportError (a broken wheel, CUDA libs)
            return f"{module} not importable ({type(exc).__name__}: {exc})"
    return None


# -- small shared helpers ------------------------------------------------------------------------


class Budget:
    """Seconds a section may still spend; work is sized so one unit (a step, a batch) can overrun it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def spent(self) -> bool:
        return self.left() <= 0


def device_of(plan: Plan):
    import torch

    if plan.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    return torch.device(plan.device)


def synchronize(device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    """Return cached GPU memory between sections, so one section's leftovers do not limit the next."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_gb(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 1e9, 1) if device.type == "cuda" else None


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@lru_cache(maxsize=4)
def word_tokenizer(vocab_size: int):
    """A word-level tokenizer whose ids cover the whole model vocabulary, with ChatML turns.

    Why not a real tokenizer: none may be downloaded, and ids a BPE vocabulary of
    a few thousand tokens lacks would decode to nothing, hiding differences between
    two generations. Here every id is one whitespace-separated word (`t123`), so
    equal text means equal tokens. Words outside the vocabulary (the task
    prompt's English) become `<unk>`, one token each, which is all a benchmark needs.
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    words = ["system", "user", "assistant", "<think>", "</think>", "<diagnosis>", "</diagnosis>"]
    vocab = {token: i for i, token in enumerate(specials + words)}
    vocab.update({f"t{i}": i for i in range(len(vocab), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = (
        "{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
        "{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"], chat_template=template,
    )
    # The answer tags stay ordinary tokens, so decoding with skip_special_tokens keeps them for the reward.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in words[3:]])
    return tokenizer


def random_words(count: int, vocab_size: int, rng) -> str:
    """`count` random word tokens: text that tokenizes to exactly `count` ids."""
    return " ".join(f"t{rng.randrange(16, vocab_size)}" for _ in range(count))


def build_model(size: str, tokenizer, dtype, device, attn_implementation: str = "sdpa"):
    """A random-init Qwen2 model of `size`, made directly on `device` (no download, no slow CPU init)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        **SHAPES[size], max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return model.to(device)


def parameter_count(model) -> int:
    """Parameters, tied embeddings once: 6 x this is the forward+backward FLOPs per token MFU counts."""
    return sum(p.numel() for p in model.parameters())


def mfu(parameters: int, tokens_per_s: float, peak_tflops: float | None) -> float | None:
    if not peak_tflops:
        return None
    return round(6 * parameters * tokens_per_s / (peak_tflops * 1e12), 4)


# -- 0. matmul peak ------------------------------------------------------------------------------


def section_matmul_peak(plan: Plan, budget: Budget, context: dict) -> dict:
    """What the GPU sustains on large bf16 matmuls: MFU against it separates our overhead from the
    gap between the datasheet and the part (clocks, power cap)."""
    import torch

    device = device_of(plan)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows = []
    for n in plan.matmul_sizes:
        if budget.spent():
            break
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        synchronize(device)
        started = time.perf_counter()
        for _ in range(plan.matmul_iterations):
            a @ b
        synchronize(device)
        seconds = time.perf_counter() - started
        rows.append({"n": n, "dtype": str(dtype).replace("torch.", ""),
                     "tflops": round(2 * n**3 * plan.matmul_iterations / seconds / 1e12, 4)})
        del a, b
    best = max((row["tflops"] for row in rows), default=None)
    context["measured_peak_tflops"] = best
    return {"results": rows, "measured_peak_tflops": best,
            "nominal_peak_tflops": plan.peak_tflops if device.type == "cuda" else None}


# -- 1. CPU/GPU agreement ------------------------------------------------------------------------


def tiny_model(vocab_size: int):
    """deepicd's tiny model (its config and seeded init) on the CPU in fp32, and where it came from.

    `deepicd.tiny` needs neither omegaconf nor Hydra to build a model; where it cannot be
    imported all the same, the same shape is built directly, which checks the architecture
    just as well.
    """
    import torch

    tokenizer = word_tokenizer(vocab_size)
    problem = missing_requirement(("deepicd.tiny",))
    if problem is None:
        from deepicd import tiny

        config = dataclasses.replace(tiny.TinyModelConfig(), vocab_size=vocab_size)
        return tiny.init_model(config, tokenizer).float(), "deepicd.tiny.init_model (default preset shape)"
    model = build_model("tiny", tokenizer, torch.float32, torch.device("cpu"))
    return model, f"Qwen2 of the tiny shape built directly, because {problem}"


class exact_fp32:
    """fp32 matmuls without TF32 for the duration: the comparison is about correctness, not speed."""

    def __enter__(self):
        import torch

        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                      torch.get_float32_matmul_precision())
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        return self

    def __exit__(self, *exc):
        import torch

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, precision = self.saved
        torch.set_float32_matmul_precision(precision)
        return False


def sft_losses(model, input_ids, labels) -> list[float]:
    """Completion-only loss of a fixed batch, then again after one AdamW step: forward, backward and update."""
    import torch

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = model(input_ids=input_ids, labels=labels).loss
    first.backward()
    optimizer.step()
    with torch.no_grad():
        second = model(input_ids=input_ids, labels=labels).loss
    return [float(first), float(second)]


def greedy_tokens(model, prompts, new_tokens: int, never: int, want_margin: bool):
    """Greedy continuations, and (on request) the smallest top-1/top-2 logit gap met along the way.

    The gap says whether a disagreement could be a near-tie flipped by rounding
    rather than a real fault: with a gap far above fp32 rounding, none is excusable.
    """
    import torch
    from transformers import GenerationConfig

    model.eval()
    config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              eos_token_id=never, pad_token_id=0, return_dict_in_generate=True,
                              output_logits=want_margin)
    with torch.inference_mode():
        output = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), generation_config=config)
    tokens = output.sequences[:, prompts.shape[1]:].cpu().tolist()
    margin = None
    if want_margin:
        top = torch.stack(output.logits).float().topk(2, dim=-1).values
        margin = float((top[..., 0] - top[..., 1]).min())
    return tokens, margin


def section_correctness(plan: Plan, budget: Budget, context: dict) -> dict:
    """The tiny model trains and generates the same on the CPU and the GPU in fp32."""
    import torch

    vocab = SHAPES["tiny"]["vocab_size"]
    reference, source = tiny_model(vocab)
    device = device_of(plan)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(16, vocab, (plan.correctness_rows, plan.correctness_tokens), generator=generator)
    labels = ids.clone()
    labels[:, : plan.correctness_tokens // 2] = -100  # the prompt half is masked, as completion-only SFT does
    prompts = ids[:, : min(16, plan.correctness_tokens)]
    with exact_fp32():
        cpu_losses = sft_losses(copy.deepcopy(reference), ids, labels)
        other = copy.deepcopy(reference).to(device)
        other_losses = sft_losses(other, ids.to(device), labels.to(device))
        cpu_tokens, margin = greedy_tokens(reference, prompts, plan.correctness_new_tokens, vocab + 7, True)
        other_tokens, _ = greedy_tokens(copy.deepcopy(reference).to(device), prompts.to(device),
                                        plan.correctness_new_tokens, vocab + 7, False)
    differences = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(cpu_losses, other_losses)]
    same = sum(a == b for a, b in zip(cpu_tokens, other_tokens))
    passed = max(differences) < LOSS_TOLERANCE and same == len(cpu_tokens)
    compared = "cpu vs " + (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else "cpu (no CUDA device: the harness is checked, not the GPU)")
    results = {
        "passed": passed, "losses_cpu": cpu_losses, "losses_other": other_losses,
        "loss_rel_diff_max": max(differences), "loss_tolerance": LOSS_TOLERANCE,
        "greedy_rows_identical": same, "greedy_rows": len(cpu_tokens),
        "greedy_new_tokens": plan.correctness_new_tokens, "min_top2_logit_margin_cpu": margin,
    }
    return {"results": results, "model": source, "compared": compared, "dtype": "float32 (TF32 off)"}


# -- 2. SFT throughput ---------------------------------------------------------------------------


def flat_preset(path: Path) -> dict:
    """A preset of a flat schema (SFT) as a dict, its `defaults:` list resolved in Hydra's order
    (`_self_` where listed, else last) by updating a dict: PyYAML only, no Hydra."""
    import yaml

    own = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = list(own.pop("defaults", []))
    if "_self_" not in entries:
        entries.append("_self_")
    merged: dict = {}
    for entry in entries:
        merged.update(own if entry == "_self_" else flat_preset(path.parent / f"{entry}.yaml"))
    return merged


def sft_run_config(plan: Plan, device):
    """The shipped SFT preset as `deepicd sft` would read it, plus `--sft-set` and the benchmark's stop.

    Read with PyYAML (a transformers dependency) rather than through Hydra, which
    the GPU image lacks (see `flat_preset`).
    """
    import yaml

    from deepicd.train import sft

    data = flat_preset(ROOT / "src" / "deepicd" / "configs" / "sft" / f"{plan.sft_preset}.yaml")
    known = {f.name for f in dataclasses.fields(sft.SFTRunConfig)}
    for pair in plan.sft_overrides:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--sft-set {pair!r}: expected key=value with a key of SFTRunConfig")
        data[key] = yaml.safe_load(value)
    return sft.SFTRunConfig(**{**data, "device": device.type, "report_to": []})  # checks itself when built


def sft_samples(rows: int, vocab: int, plan: Plan, seed: int = 0):
    """Pre-tokenized prompt-completion rows of random ids, with the distilled set's lengths."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    ids, masks = [], []
    for _ in range(rows):
        prompt, completion = rng.randint(*plan.sft_prompt_tokens), rng.randint(*plan.sft_completion_tokens)
        ids.append([rng.randrange(16, vocab) for _ in range(prompt + completion)])
        masks.append([0] * prompt + [1] * completion)
    return Dataset.from_dict({"input_ids": ids, "completion_mask": masks})


def counting_trainer():
    """SFTTrainer that counts real (non-pad) and padded tokens per micro-batch; nothing else changes."""
    from trl import SFTTrainer

    class CountingSFTTrainer(SFTTrainer):
        real_tokens = 0
        padded_tokens = 0

        def training_step(self, model, inputs, num_items_in_batch=None):
            mask = inputs.get("attention_mask")
            self.padded_tokens += int(inputs["input_ids"].numel())
            self.real_tokens += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
            return super().training_step(model, inputs, num_items_in_batch)

    return CountingSFTTrainer


def step_clock(device, budget: Budget, read_tokens):
    """A callback stamping (time, tokens so far) at each optimizer step's end; it stops training once
    the budget is spent, after at least one step beyond the warm-up."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.stamps = []

        def on_train_begin(self, args, state, control, **kwargs):
            synchronize(device)
            self.stamps = [(time.perf_counter(), read_tokens())]

        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            self.stamps.append((time.perf_counter(), read_tokens()))
            if budget.spent() and len(self.stamps) >= 3:
                control.should_training_stop = True

    return StepClock()


def throughput(stamps) -> tuple[float, int, float]:
    """Tokens/s after the first (warm-up) optimizer step, tokens and seconds counted."""
    if len(stamps) < 3 or stamps[-1][0] <= stamps[1][0]:
        raise RuntimeError("no optimizer step finished after the warm-up step; raise the time budget")
    (start, tokens_start), (end, tokens_end) = stamps[1], stamps[-1]
    return (tokens_end - tokens_start) / (end - start), tokens_end - tokens_start, end - start


def deepicd_trainer(plan: Plan, size: str, device, output_dir: Path):
    """Arguments and model exactly as `deepicd.train.sft.run` builds them for its `SFTTrainer`.

    `run` hands `build_sft_config(config, ...)` and the model's path to
    `SFTTrainer`; here the model is made in memory with the dtype and attention
    that `model_init_kwargs` name (what the trainer would load from that path),
    and the samples come pre-tokenized. Only `max_steps`, the final checkpoint
    (none) and progress bars (off) are the benchmark's. If
    `run` ever builds its trainer differently (collator, kernels, compilation),
    mirror it here.
    """
    import torch

    from deepicd.train import sft

    config = sft_run_config(plan, device)
    rows_per_step = config.per_device_batch_size * sft.accumulation_steps(config, 1)
    config.max_steps = 1 + max(1, math.ceil(plan.sft_timed_rows / rows_per_step))
    args = sft.build_sft_config(config, output_dir, processes=1, has_eval=False)
    args.disable_tqdm = True  # progress bars only; nothing the step does changes
    args.save_strategy = "no"  # a run's end would write weights and optimizer state (~18 GB at 1.5B): not training
    tokenizer = word_tokenizer(SHAPES[size]["vocab_size"])
    init = args.model_init_kwargs or {}
    model = build_model(size, tokenizer, getattr(torch, init.get("dtype", "float32")), device,
                        init.get("attn_implementation", "sdpa"))
    args.model_init_kwargs = None  # honoured above; the trainer would ignore them, with a warning, for a model object
    settings = {"preset": plan.sft_preset, "overrides": list(plan.sft_overrides), "config": dataclasses.asdict(config)}
    return args, model, tokenizer, rows_per_step, settings


def trl_default_trainer(plan: Plan, size: str, device, output_dir: Path):
    """TRL's SFTConfig defaults (bf16 autocast over fp32 weights, gradient checkpointing, batch 8, no
    accumulation), except max_length: raised from TRL's 1024 to deepicd's, so both train the same,
    untruncated samples; on a CPU, fp32."""
    import torch
    from trl import SFTConfig

    cpu = device.type == "cpu"
    max_length = sft_run_config(plan, device).max_length
    args = SFTConfig(output_dir=str(output_dir), max_length=max_length, save_strategy="no", report_to="none",
                     disable_tqdm=True, use_cpu=cpu, **({"bf16": False} if cpu else {}))
    rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    args.max_steps = 1 + max(1, math.ceil(plan.sft_timed_rows / rows_per_step))
    tokenizer = word_tokenizer(SHAPES[size]["vocab_size"])
    model = build_model(size, tokenizer, torch.float32, device)
    return args, model, tokenizer, rows_per_step, {"settings": "TRL SFTConfig defaults, max_length raised"}


def measure_sft(plan: Plan, size: str, variant: str, budget: Budget, context: dict) -> dict:
    """Train a few optimizer steps of one variant; tokens/s and MFU after the warm-up step."""
    device = device_of(plan)
    build = deepicd_trainer if variant == "deepicd" else trl_default_trainer
    with tempfile.TemporaryDirectory(prefix="gpu-check-sft-") as scratch:
        args, model, tokenizer, rows_per_step, settings = build(plan, size, device, Path(scratch))
        data = sft_samples(rows_per_step * args.max_steps, SHAPES[size]["vocab_size"], plan)
        trainer = counting_trainer()(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        clock = step_clock(device, budget, lambda: trainer.real_tokens)
        trainer.add_callback(clock)
        parameters = parameter_count(model)
        reset_peak_memory(device)
        trainer.train()
        rate, tokens, seconds = throughput(clock.stamps)
        row = {
            "size": size, "variant": variant, "parameters": parameters,
            "rows_per_optimizer_step": rows_per_step, "micro_batch": args.per_device_train_batch_size,
            "gradient_accumulation": args.gradient_accumulation_steps, "bf16": bool(args.bf16),
            "gradient_checkpointing": bool(args.gradient_checkpointing), "packing": bool(args.packing),
            "padding_free": bool(args.padding_free), "optimizer": str(args.optim),
            "timed_optimizer_steps": len(clock.stamps) - 2, "timed_tokens": tokens, "timed_seconds": round(seconds, 2),
            "tokens_per_s": round(rate, 1),
            "pad_share": round(1 - trainer.real_tokens / max(trainer.padded_tokens, 1), 3),
            "mfu_nominal": mfu(parameters, rate, plan.peak_tflops) if device.type == "cuda" else None,
            "mfu_measured_peak": mfu(parameters, rate, context.get("measured_peak_tflops")),
            "peak_memory_gb": peak_memory_gb(device), **settings,
        }
        del trainer, model
    return row


def section_sft(plan: Plan, budget: Budget, context: dict) -> dict:
    """deepicd's SFT settings against TRL's defaults, per model shape, each run guarded on its own."""
    runs = [(size, variant) for size in plan.sft_sizes for variant in ("deepicd", "trl-defaults")]
    rows = []
    for number, (size, variant) in enumerate(runs):
        share = Budget(max(budget.left(), 0) / (len(runs) - number))
        try:
            rows.append(measure_sft(plan, size, variant, share, context))
        except Exception as exc:
            rows.append({"size": size, "variant": variant, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc(limit=8)})
        free_memory()
    goal = next((row for row in rows if row.get("size") == "1.5b" and row.get("variant") == "deepicd"), None)
    met = goal.get("mfu_nominal") if goal else None
    return {"results": rows, "goal": f"MFU >= {MFU_GOAL:.0%} on the 1.5b shape through deepicd's SFT path",
            "goal_met": (met >= MFU_GOAL) if met is not None else None, "baseline": BASELINES["sft"]}


# -- 3. generation throughput --------------------------------------------------------------------


def generation_requests(tokenizer, count: int, target_tokens: int, seed: int = 0):
    """Task prompts around random-word notes, ~`target_tokens` tokens each (+-15%, as notes vary)."""
    import random

    from deepicd.generate import GenerationRequest
    from deepicd.generate.render import prompt_ids
    from deepicd.prompts import task

    rng = random.Random(seed)
    base = len(prompt_ids(tokenizer, GenerationRequest("base", task.messages(""))))
    requests = []
    for number in range(count):
        words = max(1, int(target_tokens * rng.uniform(0.85, 1.15)) - base)
        note = random_words(words, len(tokenizer), rng)
        requests.append(GenerationRequest(f"p{number}", task.messages(note)))
    return requests


def naive_generate(generator, requests, sampling, batch: int, budget: Budget) -> dict:
    """Consecutive batches of `batch` prompts through one `model.generate` each, in input order."""
    import torch

    from deepicd.generate.render import prompt_ids

    model, tokenizer = generator.model, generator.tokenizer
    config = generator.generation_config(sampling)  # the backend's own decoding rule: only batching differs
    texts, tokens = {}, 0
    synchronize(model.device)
    started = time.perf_counter()
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        padded = tokenizer.pad({"input_ids": [prompt_ids(tokenizer, r) for r in chunk]}, padding=True,
                               return_tensors="pt")
        input_ids = padded["input_ids"].to(model.device)
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=padded["attention_mask"].to(model.device),
                                    generation_config=config)
        for request, sequence in zip(chunk, output[:, input_ids.shape[1]:].tolist()):
            texts[request.key] = generator.decode(sequence)[0]
            tokens += len(sequence)
        if budget.spent():
            break
    synchronize(model.device)
    return {"texts": texts, "tokens": tokens, "seconds": time.perf_counter() - started}


def backend_generate(generator, requests, sampling, budget: Budget) -> dict:
    """deepicd's default path: `TransformersGenerator.generate` as distill and evaluate call it."""
    texts, tokens = {}, 0
    synchronize(generator.model.device)
    started = time.perf_counter()
    results = generator.generate(requests, sampling)
    for result in results:
        if result.error:
            raise RuntimeError(f"generation failed for {result.key}: {result.error}")
        texts[result.key] = result.completions[0]
        tokens += sum(result.completion_tokens)
        if budget.spent():
            break
    results.close()
    synchronize(generator.model.device)
    return {"texts": texts, "tokens": tokens, "seconds": time.perf_counter() - started}


def agreement(first: dict, second: dict) -> dict:
    """Share of prompts whose greedy completions are identical, and how far they agree on average."""
    keys = sorted(first.keys() & second.keys())
    if not keys:
        return {"compared": 0, "match_rate": None, "mean_common_prefix": None}
    identical, prefixes = 0, []
    for key in keys:
        a, b = first[key].split(), second[key].split()
        identical += a == b
        common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefixes.append(common / max(len(a), len(b), 1))
    return {"compared": len(keys), "match_rate": round(identical / len(keys), 4),
            "mean_common_prefix": round(statistics.mean(prefixes), 4)}


def guarded_variant(name: str, run) -> dict:
    """One generation variant, warmed up and timed; an error is kept, so the other variant still counts."""
    try:
        run(True)  # warm-up: the first few prompts, few tokens (kernels, allocator), untimed
        outcome = run(False)
    except Exception as exc:
        return {"variant": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8),
                "texts": {}}
    return {"variant": name, "prompts": len(outcome["texts"]), "generated_tokens": outcome["tokens"],
            "seconds": round(outcome["seconds"], 2),
            "tokens_per_s": round(outcome["tokens"] / max(outcome["seconds"], 1e-9), 1), "texts": outcome["texts"]}


def default_generator(plan: Plan):
    """The transformers backend with its default settings, on a random-init model; and the model's dtype."""
    import torch

    from deepicd.generate import GeneratorConfig
    from deepicd.generate.transformers_backend import TransformersGenerator

    device = device_of(plan)
    tokenizer = word_tokenizer(SHAPES[plan.gen_size]["vocab_size"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build_model(plan.gen_size, tokenizer, dtype, device).eval()
    generator = TransformersGenerator(GeneratorConfig(model=f"random-init {plan.gen_size}", progress=False),
                                      model=model, tokenizer=tokenizer)
    # No end token can occur: every sequence runs to max_new_tokens, so both paths do the same work.
    generator.stop_ids = [SHAPES[plan.gen_size]["vocab_size"] + 1000]
    return generator, dtype


def section_generation(plan: Plan, budget: Budget, context: dict) -> dict:
    """Naive batched `generate` against the backend's default path, greedy, every sequence full length."""
    from deepicd.generate import SamplingConfig
    from deepicd.generate.render import prompt_ids

    generator, dtype = default_generator(plan)
    tokenizer = generator.tokenizer
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=plan.gen_new_tokens, seed=0)
    short = dataclasses.replace(sampling, max_new_tokens=min(8, plan.gen_new_tokens))
    requests = generation_requests(tokenizer, plan.gen_prompts, plan.gen_prompt_tokens)

    def naive(warm_up: bool):
        if warm_up:
            return naive_generate(generator, requests[:8], short, plan.gen_naive_batch, Budget(60))
        return naive_generate(generator, requests, sampling, plan.gen_naive_batch, Budget(budget.left() / 2))

    def default(warm_up: bool):
        if warm_up:
            return backend_generate(generator, requests[:8], short, Budget(60))
        return backend_generate(generator, requests, sampling, Budget(budget.left()))

    rows = [guarded_variant(f"naive generate, batch {plan.gen_naive_batch}", naive),
            guarded_variant("deepicd default path", default)]
    texts = [row.pop("texts") for row in rows]
    rates = [row.get("tokens_per_s") for row in rows]
    lengths = sorted(len(prompt_ids(tokenizer, r)) for r in requests)
    result = {
        "results": rows, "speedup": round(rates[1] / rates[0], 2) if all(rates) else None,
        "greedy_agreement": agreement(*texts),
        "default_path": "continuous batching" if generator.continuous else
                        f"length-sorted static batches of {generator.config.batch_size}",
        "model": plan.gen_size, "dtype": str(dtype).replace("torch.", ""),
        "prompt_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
        "new_tokens": plan.gen_new_tokens, "baseline": BASELINES["generation"],
    }
    generator.close()
    return result


# -- 4. one GRPO step ----------------------------------------------------------------------------


def grpo_data(folder: Path, tokenizer, rows: int, prompt_tokens: int) -> Path:
    """An admission-note table (`deepicd preprocess`'s plain shape) whose prompts have ~`prompt_tokens`."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from deepicd.generate import GenerationRequest
    from deepicd.generate.render import prompt_ids
    from deepicd.prompts import task

    rng = random.Random(1)
    base = len(prompt_ids(tokenizer, GenerationRequest("base", task.messages(""))))
    notes = [random_words(max(1, prompt_tokens - base), len(tokenizer), rng) for _ in range(rows)]
    table = pa.table({"subject_id": list(range(rows)), "hadm_id": [str(i) for i in range(rows)], "text": notes,
                      "first_code": ["I214"] * rows, "codes": [["I214"]] * rows})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "train.parquet")
    return folder


def grpo_run_config(plan: Plan, data_dir: Path, out_dir: Path, device):
    """A TRL-backend run config built in code: `load_grpo_config` would need Hydra, which the image lacks."""
    from deepicd.train.grpo_config import GRPORunConfig, GRPOSettings, RewardSettings, TrlSettings

    cuda = device.type == "cuda"
    run = GRPORunConfig(
        name="gpu-check", backend="trl", model=f"random-init {plan.grpo_size}", data=str(data_dir),
        out=str(out_dir), reward=RewardSettings(preset="paper"),
        grpo=GRPOSettings(train_batch_size=plan.grpo_prompts, mini_batch_size=plan.grpo_prompts,
                          num_generations=plan.grpo_generations, max_completion_length=plan.grpo_completion_tokens,
                          max_prompt_length=plan.grpo_prompt_tokens + 512, max_steps=1 + plan.grpo_timed_steps,
                          warmup_steps=0, save_steps=10**6, bf16=cuda, gradient_checkpointing=cuda),
        trl=TrlSettings(per_device_batch_size=plan.grpo_micro_batch, use_vllm="false",
                        dtype="bfloat16" if cuda else "float32", logging_steps=1),
    )  # checks itself when built, as a loaded preset does
    return run


def time_method(trainer, name: str, bucket: list, device) -> None:
    """Wrap one trainer method so each call's wall time (GPU work included) is added to `bucket`."""
    original = getattr(trainer, name)

    def timed(*args, **kwargs):
        synchronize(device)
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            synchronize(device)
            bucket[-1] += time.perf_counter() - started

    setattr(trainer, name, timed)


def grpo_step_clock(device, generation: list, reward: list, budget: Budget):
    """Step times, and a fresh generation/reward bucket at each step's start; training stops once the
    budget is spent, after the warm-up step and one more."""
    from transformers import TrainerCallback

    class GRPOClock(TrainerCallback):
        def __init__(self):
            self.steps = []
            self.started = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            synchronize(device)
            generation.append(0.0)
            reward.append(0.0)
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            self.steps.append(time.perf_counter() - self.started)
            if budget.spent() and len(self.steps) >= 2:
                control.should_training_stop = True

    return GRPOClock()


def grpo_trainer(plan: Plan, device, scratch: Path, tokenizer, callback):
    """A GRPOTrainer built the way `deepicd.train.grpo_trl` builds it, on an in-memory random-init model.

    Only the benchmark's own choices differ: every completion runs to full length
    (so steps are comparable), no checkpoints, no progress bars.
    """
    import torch
    from trl import GRPOTrainer

    from deepicd.rewards.config import RewardConfig
    from deepicd.rewards.trl_entry import reward_functions
    from deepicd.train import grpo_trl

    reward_config = RewardConfig()  # the `paper` preset's values are the schema's defaults
    data_dir = grpo_data(scratch / "data", tokenizer, max(plan.grpo_prompts * 4, 8), plan.grpo_prompt_tokens)
    run = grpo_run_config(plan, data_dir, scratch / "run", device)
    model = build_model(plan.grpo_size, tokenizer, getattr(torch, run.trl.dtype), device)
    dataset, _, dropped = grpo_trl.build_dataset(run, tokenizer, reward_config.prefill)
    args = grpo_trl.grpo_args(run, scratch / "run" / "checkpoints", vllm=False)
    args.generation_kwargs = {"min_new_tokens": plan.grpo_completion_tokens}
    args.save_strategy = "no"
    args.disable_tqdm = True
    trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(reward_config), args=args,
                          train_dataset=dataset, processing_class=tokenizer, callbacks=[callback])
    facts = {"parameters": parameter_count(model), "dropped_prompts": dropped, "bf16": bool(args.bf16),
             "gradient_checkpointing": bool(args.gradient_checkpointing),
             "prompt_tokens": len(tokenizer(dataset[0]["prompt"])["input_ids"])}
    return trainer, facts


def grpo_split(steps: list) -> dict:
    """Median step time and its parts over the steps after the warm-up one (or the only one there is)."""
    timed = steps[1:] or steps
    return {
        "median_step_s": round(statistics.median(t for t, _, _ in timed), 3),
        "generation_s": round(statistics.median(g for _, g, _ in timed), 3),
        "reward_s": round(statistics.median(r for _, _, r in timed), 4),
        "rest_s": round(statistics.median(t - g - r for t, g, r in timed), 3),
    }


def section_grpo(plan: Plan, budget: Budget, context: dict) -> dict:
    """Steps of deepicd's TRL GRPO backend: seconds per step, split into generation, reward and the rest."""
    device = device_of(plan)
    tokenizer = word_tokenizer(SHAPES[plan.grpo_size]["vocab_size"])
    generation, reward = [], []
    clock = grpo_step_clock(device, generation, reward, budget)
    with tempfile.TemporaryDirectory(prefix="gpu-check-grpo-") as scratch:
        trainer, facts = grpo_trainer(plan, device, Path(scratch), tokenizer, clock)
        time_method(trainer, "_generate", generation, device)
        time_method(trainer, "_calculate_rewards", reward, device)
        reset_peak_memory(device)
        trainer.train()
        del trainer
    steps = list(zip(clock.steps, generation, reward))
    results = grpo_split(steps)
    completions = plan.grpo_prompts * plan.grpo_generations
    results["completion_tokens_per_s"] = round(completions * plan.grpo_completion_tokens / results["median_step_s"], 1)
    return {
        "results": results, "step_seconds": [round(t, 3) for t in clock.steps],
        "timed_steps": max(len(steps) - 1, 1), "warm_up_step_included": len(steps) < 2,
        "rest_is": "old-policy log-probs, loss, backward and optimizer step",
        "model": plan.grpo_size, "prompts": plan.grpo_prompts, "completions_per_step": completions,
        "completion_tokens": plan.grpo_completion_tokens, "micro_batch": plan.grpo_micro_batch,
        "peak_memory_gb": peak_memory_gb(device), "baseline": BASELINES["grpo"], **facts,
    }


# -- the report ----------------------------------------------------------------------------------


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment(plan: Plan) -> dict:
    """The machine and library versions the figures belong to."""
    import torch

    device = device_of(plan)
    info = {"device": str(device), "versions": versions(), "cuda": torch.version.cuda,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, gpu_memory_gb=round(properties.total_memory / 1e9, 1))
    return info


def run_section(name: str, plan: Plan, budget: Budget, context: dict) -> dict:
    """One section, guarded: a skip names the missing module, an error keeps its traceback."""
    started = time.perf_counter()
    problem = missing_requirement(REQUIREMENTS[name])
    if problem:
        entry = {"status": "skipped", "reason": problem}
    else:
        try:
            entry = {"status": "ok", **SECTION_FUNCTIONS[name](plan, budget, context)}
        except Exception as exc:
            entry = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc(limit=12)}
    entry.update(seconds=round(time.perf_counter() - started, 1), budget_s=round(budget.seconds, 1))
    try:
        free_memory()
    except Exception:  # a broken CUDA context must not cost the sections after it their report
        pass
    return entry


SECTION_FUNCTIONS = {
    "matmul_peak": section_matmul_peak,
    "correctness": section_correctness,
    "sft": section_sft,
    "generation": section_generation,
    "grpo": section_grpo,
}


def number(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def matmul_rows(entry: dict) -> list:
    return [(f"{r['dtype']} {r['n']}³", f"{number(r['tflops'], 1 if r['tflops'] >= 10 else 3)} TFLOP/s", "")
            for r in entry["results"]]


def correctness_rows(entry: dict) -> list:
    result = entry["results"]
    return [(entry["compared"], "passed" if result["passed"] else "FAILED",
             f"loss rel diff {result['loss_rel_diff_max']:.2e} (< {result['loss_tolerance']:.0e}); greedy rows "
             f"identical {result['greedy_rows_identical']}/{result['greedy_rows']} (smallest top-2 logit gap "
             f"{result['min_top2_logit_margin_cpu']:.2e}); model: {entry['model']}")]


def sft_rows(entry: dict) -> list:
    rows = []
    for r in entry["results"]:
        case = f"{r['size']} {r['variant']}"
        if "error" in r:
            rows.append((case, "error", r["error"]))
            continue
        rows.append((case, f"{number(r['tokens_per_s'], 0)} tokens/s",
                     f"MFU {percent(r['mfu_nominal'])} of nominal, {percent(r['mfu_measured_peak'])} of measured "
                     f"peak; batch {r['micro_batch']}x{r['gradient_accumulation']}, pad share "
                     f"{percent(r['pad_share'])}, peak {number(r['peak_memory_gb'])} GB"))
    rows.append(("goal", {True: "met", False: "not met", None: "–"}[entry["goal_met"]], entry["goal"]))
    return rows


def generation_rows(entry: dict) -> list:
    rows = [(r["variant"], "error", r["error"]) if "error" in r else
            (r["variant"], f"{number(r['tokens_per_s'])} tokens/s",
             f"{r['prompts']} prompts, {r['generated_tokens']:,} tokens in {r['seconds']} s")
            for r in entry["results"]]
    same = entry["greedy_agreement"]
    rows.append(("greedy agreement", percent(same["match_rate"]),
                 f"identical completions over {same['compared']} prompts; mean common prefix "
                 f"{percent(same['mean_common_prefix'])}; default path: {entry['default_path']}; "
                 f"speed-up {number(entry['speedup'], 2)}x"))
    return rows


def grpo_rows(entry: dict) -> list:
    result = entry["results"]
    return [(f"{entry['model']}, {entry['completions_per_step']} x {entry['completion_tokens']} tokens",
             f"{number(result['median_step_s'], 2)} s/step",
             f"generation {result['generation_s']} s, reward {result['reward_s']} s, rest {result['rest_s']} s "
             f"(median of {entry['timed_steps']} steps)")]


TABLE_ROWS = {"matmul_peak": matmul_rows, "correctness": correctness_rows, "sft": sft_rows,
              "generation": generation_rows, "grpo": grpo_rows}


def markdown_rows(name: str, entry: dict) -> list[tuple[str, str, str]]:
    """(case, figure, notes) rows of one section for the table; a skip or an error is one row."""
    if entry["status"] != "ok":
        return [("–", entry["status"], entry.get("reason") or entry.get("error", ""))]
    try:
        return TABLE_ROWS[name](entry)
    except (KeyError, TypeError, ValueError) as exc:  # a half-filled entry must not cost the whole table
        return [("–", "see JSON", f"table row failed: {type(exc).__name__}: {exc}")]


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"# GPU check: {env.get('gpu', env.get('device'))}, {report['started']}",
        "",
        f"Command: `{report['command']}`; mode {report['mode']}; wall time {report['wall_s']} s.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        "| section | case | figure | notes |",
        "|---|---|---:|---|",
    ]
    for name, entry in report["sections"].items():
        for case, figure, notes in markdown_rows(name, entry):
            notes = " ".join(str(notes).split()).replace("|", "/")
            lines.append(f"| {name} | {case} | {figure} | {notes} |")
    baselines = [f"- {name}: {text}" for name, text in BASELINES.items()]
    return "\n".join(lines + ["", "Earlier figures (REFERENCE §10, for context only):", *baselines, ""])


def write_outputs(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "gpu_check.md").write_text(markdown(report), encoding="utf-8")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check"),
                        help="folder for gpu_check.json and gpu_check.md (default: $OUT, else ./gpu-check)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, few tokens and steps: the harness in seconds")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--budget", type=float, default=None,
                        help="total seconds the sections may take (default 420; --tiny 120)")
    parser.add_argument("--peak-tflops", type=float, default=NOMINAL_PEAK_TFLOPS,
                        help="nominal dense bf16 peak for MFU (default 790)")
    parser.add_argument("--sft-preset", default="qwen2.5-7b", help="shipped SFT preset whose settings are measured")
    parser.add_argument("--sft-set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override keys of the SFT preset, e.g. packing=true per_device_batch_size=8")
    parser.add_argument("--sft-sizes", nargs="+", choices=("0.5b", "1.5b"), default=None)
    parser.add_argument("--without", nargs="+", default=[], metavar="PACKAGE",
                        help="treat these packages as not installed (rehearses the GPU image's skips)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan(tiny=args.tiny, peak_tflops=args.peak_tflops, device=args.device, sft_preset=args.sft_preset,
                sft_overrides=list(args.sft_set))
    if args.sft_sizes:
        plan.sft_sizes = tuple(args.sft_sizes)
    if args.tiny:
        plan = tiny_plan(plan)
    if args.budget:
        plan.budget_s = args.budget
    return plan


def quiet_offline_environment() -> None:
    """Nothing is downloaded and the GPU machine has no network: say so before any library asks."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("HF_HUB_DISABLE_TELEMETRY", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(key, value)


def limit_cpu_threads(plan: Plan) -> None:
    """One torch thread for `--tiny` on a CPU: models this small only lose time synchronising threads,
    and the test machine is shared."""
    import torch

    if plan.tiny and device_of(plan).type == "cpu":
        torch.set_num_threads(1)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_offline_environment()
    hide_modules(args.without)
    started = time.perf_counter()
    plan = make_plan(args)
    limit_cpu_threads(plan)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else "main(%r)" % (argv,),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "tiny" if plan.tiny else "full", "budget_s": plan.budget_s, "without": args.without,
        "environment": environment(plan), "plan": dataclasses.asdict(plan), "sections": {}, "wall_s": None,
    }
    weights = {name: WEIGHTS[name] for name in args.sections}
    context: dict = {}
    for name in args.sections:
        left = plan.budget_s - (time.perf_counter() - started)
        share = left * weights[name] / sum(weights.values())
        weights.pop(name)
        print(f"[gpu_check] {name}: budget {share:.0f} s", file=sys.stderr, flush=True)
        report["sections"][name] = run_section(name, plan, Budget(max(share, 0.0)), context)
        report["wall_s"] = round(time.perf_counter() - started, 1)
        write_outputs(report, args.out)
        entry = report["sections"][name]
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']} s "
              f"{entry.get('reason') or entry.get('error') or ''}", file=sys.stderr, flush=True)
    print(markdown(report))
    print(f"total wall time {report['wall_s']} s; wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
