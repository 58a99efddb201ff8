"""Generation throughput of the transformers backend against the obvious alternative.

The obvious way to generate for many notes is a loop of one `model.generate`
call per prompt. The backend instead sorts prompts by length and generates
batches of similar-length, left-padded prompts. This measures, on the same
prompts with the same sampling settings and the same number of new tokens:

- naive:    one `model.generate` call per prompt (no padding at all);
- unsorted: the backend on consecutive slices of `batch_size` prompts, in input
            order (batching without length sorting);
- sorted:   the backend on all prompts at once (length-sorted batches);
- continuous batching (only where a CUDA GPU is present).

Prompts are task prompts around synthetic notes of very different lengths, as
admission notes are. Every sequence generates exactly `--max-new-tokens` tokens
(end tokens are suppressed) so that all variants do the same amount of work.

    python benchmarks/bench_generate.py [--prompts 48] [--batch-size 8] [--max-new-tokens 64] [--repeats 3]
                                        [--model DIR] [--out results.json]

Without --model it builds the tiny model in a temporary folder first.
Results are recorded in docs/generation.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "patient presents with chest pain shortness of breath fever cough history of hypertension diabetes "
    "hyperlipidemia admitted for evaluation troponin elevated ecg shows sinus tachycardia lungs clear "
    "abdomen soft nontender creatinine rising started on antibiotics heparin drip aspirin statin"
).split()


def make_notes(count: int, seed: int) -> list[str]:
    """Synthetic admission notes of 20 to 600 words: the spread, not the content, is what matters here."""
    rng = random.Random(seed)
    notes = []
    for _ in range(count):
        length = int(rng.choice([20, 40, 80, 150, 300, 600]) * rng.uniform(0.8, 1.2))
        body = " ".join(rng.choice(WORDS) for _ in range(length))
        notes.append(f"CHIEF COMPLAINT: chest pain\n\nPRESENT ILLNESS: {body}")
    return notes


def build_tiny(folder: Path) -> Path:
    from deepicd import tiny

    target = folder / "tiny"
    tiny.run(dataclasses.replace(tiny.load_tiny_config(), out=str(target)))
    return target


def run_naive(generator, requests, sampling) -> int:
    """One unpadded `generate` call per prompt; returns the number of generated tokens."""
    import torch

    from deepicd.generate.render import prompt_ids

    model, config = generator.model, generator.generation_config(sampling)
    tokens = 0
    for number, request in enumerate(requests):
        ids = torch.tensor([prompt_ids(generator.tokenizer, request)], device=model.device)
        torch.manual_seed(sampling.seed + number)
        with torch.inference_mode():
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
        tokens += (output.shape[1] - ids.shape[1]) * output.shape[0]
    return tokens


def run_backend(generator, requests, sampling, slice_size: int | None = None) -> int:
    """The backend on all requests at once, or on consecutive slices of them (no global sorting)."""
    if slice_size is None:
        slices = [requests]
    else:
        slices = [requests[i : i + slice_size] for i in range(0, len(requests), slice_size)]
    tokens = 0
    for part in slices:
        for result in generator.generate(part, sampling):
            if result.error:
                raise SystemExit(f"generation failed for {result.key}: {result.error}")
            tokens += sum(result.completion_tokens)
    return tokens


def measure(variants: list[tuple[str, object]], prompts: int, repeats: int) -> list[dict]:
    """Time every variant `repeats` times, interleaved, and keep the best and the median run.

    On a shared machine other jobs only ever add time, so the best of several
    interleaved runs is the fairest estimate of each variant's own cost.
    """
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    tokens: dict[str, int] = {}
    for _ in range(repeats):
        for name, function in variants:
            started = time.perf_counter()
            tokens[name] = function()
            times[name].append(time.perf_counter() - started)
    rows = []
    for name, _ in variants:
        best, median = min(times[name]), statistics.median(times[name])
        row = {"variant": name, "best_s": round(best, 2), "median_s": round(median, 2),
               "prompts_per_s": round(prompts / best, 2), "tokens_per_s": round(tokens[name] / best, 1),
               "generated_tokens": tokens[name]}
        print(f"{name:>20}: best {best:7.2f} s (median {median:7.2f} s)  {row['prompts_per_s']:7.2f} prompts/s  "
              f"{row['tokens_per_s']:8.1f} tokens/s", file=sys.stderr)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder; default: build the tiny model in a temporary folder")
    parser.add_argument("--prompts", type=int, default=48, help="number of prompts (default 48)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per batch for the batched variants")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated per sequence")
    parser.add_argument("--n", type=int, default=1, help="samples per prompt")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: stable timings on a shared machine; "
                        "0 keeps torch's choice)")
    parser.add_argument("--seed", type=int, default=42, help="seed for notes and sampling")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per variant; the best is reported")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow one-prompt-at-a-time loop")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args()

    import torch
    import transformers

    from deepicd.generate import GenerationRequest, GeneratorConfig, SamplingConfig
    from deepicd.generate.render import prompt_ids
    from deepicd.generate.transformers_backend import TransformersGenerator
    from deepicd.prompts import task

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model_path = Path(args.model) if args.model else build_tiny(Path(scratch))
        config = GeneratorConfig(model=str(model_path), device=args.device, batch_size=args.batch_size,
                                 continuous_batching="off", progress=False)
        generator = TransformersGenerator(config)
        # Suppress every end token: each sequence then generates exactly max_new_tokens in every variant.
        generator.stop_ids = [generator.tokenizer.vocab_size + 10**6]
        notes = make_notes(args.prompts, args.seed)
        requests = [GenerationRequest(f"p{i}", task.messages(note)) for i, note in enumerate(notes)]
        sampling = SamplingConfig(temperature=0.9, max_new_tokens=args.max_new_tokens, n=args.n, seed=args.seed)
        lengths = sorted(len(prompt_ids(generator.tokenizer, request)) for request in requests)
        run_backend(generator, requests[: args.batch_size], sampling)  # warm-up: first-call allocations and kernels

        variants = []
        if not args.skip_naive:
            variants.append(("naive loop", lambda: run_naive(generator, requests, sampling)))
        variants.append(("batched, unsorted", lambda: run_backend(generator, requests, sampling, args.batch_size)))
        variants.append(("batched, sorted", lambda: run_backend(generator, requests, sampling)))
        rows = measure(variants, len(requests), args.repeats)
        if generator.model.device.type == "cuda" and hasattr(generator.model, "continuous_batching_context_manager"):
            generator.continuous = True
            run_backend(generator, requests[: args.batch_size], sampling)  # warm-up of the paged cache
            continuous = [("continuous batching", lambda: run_backend(generator, requests, sampling))]
            rows += measure(continuous, len(requests), args.repeats)

        report = {
            "device": str(generator.model.device),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "prompts": len(requests),
            "prompt_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "n": args.n,
            "repeats": args.repeats,
            "results": rows,
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
