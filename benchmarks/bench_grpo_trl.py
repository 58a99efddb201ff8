"""Speed of the TRL GRPO backend: seconds per step and tokens per second, on one GPU or the CPU.

The model is Qwen2.5-0.5B-shaped (494M parameters, vocabulary 151,936) with
random weights, so nothing is downloaded; the tokenizer is the tiny model's,
trained here. Every completion is forced to the full length (`min_new_tokens`)
so steps are comparable: by default 4 prompts x 8 completions x 256 tokens per
step, prompts of about 350 tokens, as the baseline in the project's reference
figures (TRL GRPOTrainer with transformers generation on one H100: 6.8-7.2 s
per step). The step runs through `deepicd.train.grpo_trl` (same GRPOConfig
mapping, same reward functions) so it measures what `deepicd train-grpo
--backend trl` does. Generated ids beyond the tiny tokenizer decode to nothing;
that changes the rewards, not the work.

    python benchmarks/bench_grpo_trl.py                 # GPU measurement (bf16)
    python benchmarks/bench_grpo_trl.py --smoke         # tiny model on the CPU, a few seconds
    python benchmarks/bench_grpo_trl.py --out results/bench_grpo_trl.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, max_position_embeddings=32768, vocab_size=151936, tie_word_embeddings=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny model on the CPU with short completions: checks the script runs.")
    parser.add_argument("--steps", type=int, default=None, help="Measured steps (default 5; smoke 2).")
    parser.add_argument("--warmup", type=int, default=None, help="Steps run before measuring (default 1).")
    parser.add_argument("--prompts", type=int, default=4, help="Prompts per step.")
    parser.add_argument("--generations", type=int, default=8, help="Completions per prompt.")
    parser.add_argument("--completion-tokens", type=int, default=None, help="Tokens per completion (default 256; smoke 16).")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="Approximate prompt length (default 350; smoke 120).")
    parser.add_argument("--micro-batch", type=int, default=8, help="Completions per forward/backward pass.")
    parser.add_argument("--no-gradient-checkpointing", action="store_true", help="Trade memory for speed.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the results as JSON here.")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 5)
    args.warmup = 1 if args.warmup is None else args.warmup
    args.completion_tokens = args.completion_tokens or (16 if args.smoke else 256)
    args.prompt_tokens = args.prompt_tokens or (120 if args.smoke else 350)
    return args


def build_model(folder: Path, smoke: bool):
    """The tiny model (smoke) or a random-init Qwen2.5-0.5B-shaped model sharing the tiny tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from deepicd import tiny

    built = tiny.run(tiny.TinyModelConfig(out=str(folder / "tiny")))
    if smoke:
        return built.path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built.path)
    config = Qwen2Config(**QWEN25_05B, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    target = folder / "qwen2.5-0.5b-shape"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def write_data(folder: Path, tokenizer, prompts: int, prompt_tokens: int) -> Path:
    """A plain admission-note table whose rendered prompts have about `prompt_tokens` tokens."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deepicd.prompts import task

    sentence = "Patient reports chest pain and shortness of breath on exertion, worse over two days. "
    note = "CHIEF COMPLAINT: chest pain\n\nPRESENT ILLNESS: "
    while len(tokenizer(task.render(tokenizer, note))["input_ids"]) < prompt_tokens:
        note += sentence
    rows = max(prompts * 4, 16)
    table = pa.table({"subject_id": list(range(rows)), "hadm_id": list(range(rows)), "text": [note] * rows,
                      "first_code": ["I214"] * rows, "codes": [["I214"]] * rows})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "train.parquet")
    return folder


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from deepicd import models
    from deepicd.rewards.config import load_reward_config
    from deepicd.rewards.trl_entry import reward_functions
    from deepicd import manifest
    from deepicd.train import grpo_trl
    from deepicd.train.grpo_config import load_grpo_config

    if not args.smoke and not torch.cuda.is_available():
        print("no GPU: the full measurement needs one; use --smoke on the CPU", file=sys.stderr)
        raise SystemExit(2)
    if args.smoke:
        torch.set_num_threads(1)  # the tiny model only loses time synchronising threads
    completions = args.prompts * args.generations
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as scratch:
        scratch = Path(scratch)
        model_dir = build_model(scratch, args.smoke)
        tokenizer = models.load_tokenizer(model_dir)
        data_dir = write_data(scratch / "data", tokenizer, args.prompts, args.prompt_tokens)
        run = load_grpo_config("tiny-cpu", [
            f"grpo.train_batch_size={args.prompts}", f"grpo.mini_batch_size={args.prompts}",
            f"grpo.num_generations={args.generations}", f"grpo.max_completion_length={args.completion_tokens}",
            f"grpo.max_prompt_length={args.prompt_tokens + 512}", f"grpo.max_steps={total_steps}",
            f"grpo.save_steps={total_steps * 10}", f"grpo.bf16={not args.smoke}",
            f"grpo.gradient_checkpointing={not args.no_gradient_checkpointing and not args.smoke}",
            f"trl.per_device_batch_size={min(args.micro_batch, completions)}", "trl.use_vllm=false",
            f"trl.dtype={'float32' if args.smoke else 'bfloat16'}",
        ], model=str(model_dir), data=data_dir, out=scratch / "run")
        model = models.load_causal_lm(model_dir, dtype=run.trl.dtype, device="cpu")
        parameters = sum(p.numel() for p in model.parameters())
        dataset, _, _ = grpo_trl.build_dataset(run, tokenizer, "<think>")
        prompt_len = len(tokenizer(dataset[0]["prompt"])["input_ids"])
        grpo_args = grpo_trl.grpo_args(run, scratch / "run" / "checkpoints", vllm=False)
        grpo_args.generation_kwargs = {"min_new_tokens": args.completion_tokens}
        grpo_args.save_strategy = "no"
        grpo_args.disable_tqdm = True

        times: list[float] = []

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *_, **__):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

            def on_step_end(self, *_, **__):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - self.start)

        trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(load_reward_config("paper")), args=grpo_args,
                              train_dataset=dataset, processing_class=tokenizer, callbacks=[StepTimer()])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        measured = times[args.warmup:]
        step_s = statistics.median(measured)
        completion_tokens = completions * args.completion_tokens
        results = {
            "benchmark": "grpo-trl-step",
            "mode": "smoke" if args.smoke else "qwen2.5-0.5b-shape",
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "parameters": parameters,
            "prompts_per_step": args.prompts,
            "completions_per_step": completions,
            "completion_tokens": args.completion_tokens,
            "prompt_tokens": prompt_len,
            "micro_batch": run.trl.per_device_batch_size,
            "bf16": grpo_args.bf16,
            "gradient_checkpointing": grpo_args.gradient_checkpointing,
            "step_seconds": [round(t, 3) for t in times],
            "median_step_seconds": round(step_s, 3),
            "completion_tokens_per_s": round(completion_tokens / step_s, 1),
            "total_tokens_per_s": round(completions * (args.completion_tokens + prompt_len) / step_s, 1),
            "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
            "versions": manifest.versions(grpo_trl.VERSIONED),
        }
    print(json.dumps(results, indent=2))
    if args.out:
        manifest.write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
