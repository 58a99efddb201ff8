"""Generate the completions an evaluation scores, resumably.

Generating answers for a test split takes hours on real models, so each
note's completions are appended to `generations.jsonl` the moment they exist,
one whole line per note, with its gold code (so the file can be rescored
later with `deepicd evaluate --predictions`). A rerun with the same settings
skips the notes already there; a rerun with different settings (model,
sampling, prompt, split) is refused rather than mixing two models' answers in
one table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from deepicd.errors import UserError
from deepicd.evaluate.config import EvaluateConfig
from deepicd.manifest import write_text
from deepicd.rewards.completion import normalize_gold

GENERATIONS = "generations.jsonl"
SETTINGS = "generations.settings.json"
# Above this many new tokens per note, generating on a CPU gets a note on what it will cost.
CPU_NOTE_TOKENS = 256


def _settings(config: EvaluateConfig) -> dict:
    from dataclasses import asdict

    from deepicd.evaluate import prompting

    return {
        "model": config.generator.model,
        "backend": config.generator.backend,
        "split": config.split,
        "prefill": config.prefill,
        "prompt_version": prompting.version(config),
        "sampling": asdict(config.sampling),
    }


def on_cpu(config: EvaluateConfig) -> bool:
    """Whether --model generation runs on this machine's CPU (the transformers backend without a GPU)."""
    if config.generator.backend != "transformers":
        return False  # vllm needs GPUs; an openai server runs wherever it was started
    device = config.generator.device
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return device == "cpu"


def cpu_cost_note(config: EvaluateConfig, notes: int) -> str | None:
    """A warning of what a long generation budget costs on a CPU, or None when there is nothing to say.

    The default budget (1,024 new tokens, the paper's) is meant for GPUs; on a CPU
    a model that does not stop early (every untrained or tiny model) spends all of
    it on every note. The user is told the worst case and how to bound it.
    """
    budget = config.sampling.max_new_tokens
    if budget <= CPU_NOTE_TOKENS or not on_cpu(config):
        return None
    draws = 1 if config.sampling.temperature == 0 else config.sampling.n
    total = notes * draws * budget
    return (
        f"note: generating on the CPU with sampling.max_new_tokens={budget}: up to {budget:,} new tokens for each of "
        f"{notes:,} notes" + (f" x {draws} samples" if draws > 1 else "") + f", {total:,} tokens in the worst case "
        "(a model that does not stop early uses all of them; the progress bar shows the measured rate). "
        "The paper's 1,024 tokens are meant for GPU backends; for a quick CPU look set e.g. "
        "sampling.max_new_tokens=64 (the CPU demo uses 40)."
    )


def read_done(path: Path) -> dict[str, list[str]]:
    """Completions already generated, by key; a torn last line (a crash mid-write) is ignored."""
    done: dict[str, list[str]] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("completions"), list) and "id" in row:
                done[str(row["id"])] = [str(c) for c in row["completions"]]
    return done


def _restart(out: Path, config: EvaluateConfig, overwrite: bool) -> bool:
    """Whether earlier generations must be dropped: made with other settings (allowed only with --overwrite)."""
    if not (out / GENERATIONS).is_file():
        return False
    settings_path = out / SETTINGS
    previous = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    current = _settings(config)
    changed = sorted(key for key in current if previous.get(key) != current[key])
    if changed and not overwrite:
        raise UserError(
            f"{out / GENERATIONS} was generated with other settings ({', '.join(changed)} differ); "
            "pass --overwrite to start over, or choose another --out"
        )
    return bool(changed)


def generate(notes: pd.DataFrame, config: EvaluateConfig, out: Path, *, overwrite: bool = False) -> dict[str, list[str]]:
    """Completions (k per note) for every note, keyed by hadm_id as a string, generating only what is missing."""
    from deepicd.evaluate import prompting
    from deepicd.generate import build_generator
    from deepicd.generate.base import GenerationRequest

    keys = notes["hadm_id"].astype(str)
    if keys.duplicated().any():
        raise UserError(f"hadm_id {keys[keys.duplicated()].iloc[0]} occurs twice in split {config.split!r}; ids must be unique")
    if config.sampling.n > 1 and config.sampling.temperature == 0:
        raise UserError(
            f"sampling.n={config.sampling.n} at temperature 0 yields {config.sampling.n} identical answers; "
            "set sampling.temperature > 0 for self-consistency"
        )
    gold = {key: normalize_gold(code) for key, code in zip(keys, notes["first_code"])}
    path = out / GENERATIONS
    restart = _restart(out, config, overwrite)
    done = {} if restart else read_done(path)
    messages = prompting.messages(config)
    requests = [
        GenerationRequest(key=key, messages=messages(text), prefill=config.prefill)
        for key, text in zip(keys, notes["text"])
        if key not in done
    ]
    failures: list[str] = []
    if requests:
        # Load the model before touching OUT: a wrong path then leaves nothing behind.
        generator = build_generator(config.generator)
        try:
            out.mkdir(parents=True, exist_ok=True)
            if restart:
                path.unlink()
            write_text(out / SETTINGS, json.dumps(_settings(config), indent=2) + "\n")
            with path.open("a", encoding="utf-8") as handle:
                for result in generator.generate(requests, config.sampling):
                    if result.error is not None or len(result.completions) != config.sampling.n:
                        failures.append(f"{result.key}: {result.error or f'{len(result.completions)} completions'}")
                        continue
                    row = {
                        "id": result.key,
                        "gold": gold[result.key],
                        "completions": result.completions,
                        "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens,
                    }
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    handle.flush()
                    done[result.key] = result.completions
        finally:
            generator.close()
    missing = [key for key in keys if key not in done]
    if failures or missing:
        first = failures[0] if failures else f"{missing[0]}: no result"
        raise UserError(
            f"generation failed for {len(missing)} of {len(keys)} notes (first: {first}); "
            f"the {len(keys) - len(missing)} finished ones are kept in {path}; rerun the same command to retry"
        )
    return {key: done[key] for key in keys}
