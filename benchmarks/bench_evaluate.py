"""How long `deepicd evaluate` takes on a million predictions, phase by phase.

Synthetic but realistically shaped data: gold codes drawn with a Zipf-like
law from 6,000 real ICD-10-CM codes (the paper's test set has 6,369 full
codes), answers that are exact, same-category, random, free text, empty or
missing in fixed proportions. Each phase is timed on its own, then the whole
`--predictions` path (read JSONL, parse, score, bootstrap, write, plot) end
to end. With --write-docs the table replaces the one in docs/evaluation.md.

Run:  python benchmarks/bench_evaluate.py --rows 1000000 --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepicd import icd, manifest
from deepicd.evaluate import bootstrap
from deepicd.evaluate.bootstrap import joint_cells
from deepicd.evaluate.config import EvaluateConfig
from deepicd.evaluate.evaluation import evaluate, parse_all
from deepicd.evaluate.inputs import Predictions, read_predictions
from deepicd.evaluate.labels import LEVELS
from deepicd.evaluate.run import run, write_outputs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
THINK = "Chest pain radiating to the left arm, troponin rising, ST elevation in the anterior leads. "


def synthetic(rows: int, seed: int = 0, think_chars: int = 200) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    leaves = np.asarray(icd.leaf_codes(), dtype=object)
    pool = leaves[rng.choice(len(leaves), 6000, replace=False)]
    weights = 1.0 / np.arange(1, len(pool) + 1) ** 1.05
    gold = pool[rng.choice(len(pool), rows, p=weights / weights.sum())]
    kind = rng.random(rows)
    other = pool[rng.choice(len(pool), rows, p=weights / weights.sum())]
    think = (THINK * (think_chars // len(THINK) + 1))[:think_chars]
    completions = []
    for g, o, r in zip(gold, other, kind):
        if r < 0.30:
            code = g
        elif r < 0.50:
            code = g[:3] + "9"
        elif r < 0.85:
            code = o
        elif r < 0.90:
            code = "PNE"
        else:
            code = None
        completions.append(f"{think}</think>\n<diagnosis>{code}</diagnosis>" if code else ("" if r < 0.95 else think))
    return gold, completions


def timed(label: str, results: dict, fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    results[label] = time.perf_counter() - start
    print(f"{label:<48} {results[label]:8.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Predictions to score.")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples.")
    parser.add_argument("--long-chars", type=int, default=4000, help="Completion length for the parsing throughput check.")
    parser.add_argument("--write-docs", action="store_true", help="Replace the figures in docs/evaluation.md.")
    args = parser.parse_args()

    results: dict[str, float] = {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gold, completions = synthetic(args.rows)
    predictions = Predictions([str(i) for i in range(args.rows)], gold, [[c] for c in completions])
    config = EvaluateConfig()
    config.bootstrap.samples = 0

    parsed = timed(f"parse {args.rows:,} completions (~230 chars)", results, parse_all, predictions.completions, "<think>")
    evaluation = timed("project + score (no bootstrap)", results, evaluate, predictions, config, parsed=parsed)
    encoded = {level: evaluation.levels[level].encoded for level in LEVELS}
    cells = len(joint_cells(encoded)[1])
    timed(f"bootstrap, {args.bootstrap} resamples ({cells:,} cells)", results, bootstrap.intervals, encoded, samples=args.bootstrap)

    _, long_completions = synthetic(20_000, seed=1, think_chars=args.long_chars)
    label = f"parse 20,000 completions of ~{args.long_chars} chars"
    timed(label, results, parse_all, [[c] for c in long_completions], "<think>")
    per_million_long = results[label] / 20_000 * 1e6

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outputs.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i, (g, c) in enumerate(zip(gold, completions)):
                handle.write(json.dumps({"id": i, "gold": [g], "completion": c}) + "\n")
        timed("read + validate the JSONL", results, read_predictions, path)
        timed("write predictions.jsonl, metrics, report, figures", results, write_outputs, evaluation, Path(tmp) / "written",
              manifest.record("evaluate", config=None), title="benchmark", source="", draw=True)
        full = EvaluateConfig(predictions=str(path), out=str(Path(tmp) / "eval"))
        full.bootstrap.samples = args.bootstrap
        timed("end to end: deepicd evaluate --predictions", results, run, full)

    metrics = evaluation.metrics
    lines = [
        f"Measured with `python benchmarks/bench_evaluate.py --rows {args.rows} --bootstrap {args.bootstrap} --write-docs` "
        f"on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (load average {load:.1f} "
        f"at the start: other work shared them), Python {platform.python_version()}, numpy {np.__version__}.",
        "",
        "| Phase | Seconds |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {value:.2f} |" for label, value in results.items()]
    lines += [
        "",
        f"Scoring proper (projection onto the levels, every metric, baselines) takes "
        f"{results['project + score (no bootstrap)']:.1f} s for {args.rows:,} notes; the rest is parsing, "
        f"the bootstrap and JSON input/output. Parsing is linear in the completion length: {args.rows:,} "
        f"completions of ~{args.long_chars} characters would take about {per_million_long * args.rows / 1e6:.0f} s "
        "at the rate measured above.",
        "Synthetic macro F1 (chapter / category / full code): "
        + " / ".join(f"{metrics[level]['macro_f1'] * 100:.1f}" for level in LEVELS)
        + f"; {metrics['label_space']['size']['full_code']:,} gold codes.",
    ]
    table = "\n".join(lines)
    print()
    print(table)
    if args.write_docs:
        text = DOCS.read_text(encoding="utf-8")
        if START not in text or END not in text:
            sys.exit(f"{DOCS} lacks the {START} ... {END} markers")
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        DOCS.write_text(pattern.sub(lambda _: f"{START}\n{table}\n{END}", text), encoding="utf-8")
        print(f"\nwrote the figures into {DOCS}")


if __name__ == "__main__":
    main()
