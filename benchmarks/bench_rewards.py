"""Reward throughput: completions scored per second with the `paper` preset, on one core.

Compares the deepicd scorer with a baseline that follows the published approach
(one multiline regular expression with nested `\\s*` per completion, then the
code pattern and the prefix credit), on realistic completions and on the
degenerate blank-line input that makes that expression backtrack; then times
deepicd alone on degenerate text of 10 kB, 100 kB and 1 MB, where scoring must
stay linear (the target: under a second for a megabyte of anything).

    python benchmarks/bench_rewards.py [--n 20000]

Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import random
import re
import time

from deepicd.rewards.components import prefix_credit
from deepicd.rewards.config import load_reward_config
from deepicd.rewards.scorer import RewardScorer

_BODY = r"[^<]*(?:<(?!/?{tag}>)[^<]*)*"
PUBLISHED = re.compile(
    r"^\s*(?:<think>(" + _BODY.format(tag="think") + r")</think>)?\s*<diagnosis>("
    + _BODY.format(tag="diagnosis") + r")</diagnosis>",
    re.MULTILINE,
)
PUBLISHED_CODE = re.compile(r"^[A-Z][0-9]{2}[A-Z0-9]{0,4}$")


def baseline_score(completion: str, gold: list[str]) -> float:
    """The published reward's arithmetic, written from its description (paper constants)."""
    pairs = PUBLISHED.findall("<think>" + completion)
    total = -5.0 if len(completion) == 0 else 0.0
    if not pairs:
        return total - 1.0
    think, diagnosis = pairs[0]
    code = diagnosis.strip().replace(".", "")
    total += prefix_credit(code, gold[0], 15.0, -1.0) if PUBLISHED_CODE.match(code) else -1.0
    total += 1.0 if think else 0.0
    total -= len(pairs) - 1
    return total


WORDS = "patient presents with chest pain dyspnea history of hypertension diabetes troponin elevated ecg shows st changes".split()


def realistic_completions(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Completions shaped like the paper's traces: ~480 words of reasoning, then one pair."""
    rng = random.Random(seed)
    codes = ["I214", "M5116", "J189", "N179", "A419", "K8590", "C4A0"]
    rows = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(300, 650)))
        gold = rng.choice(codes)
        prediction = gold if i % 3 == 0 else rng.choice(codes)
        rows.append((f"{words}\n</think>\n<diagnosis>{prediction}</diagnosis>", [gold]))
    return rows


def rate(fn, rows) -> float:
    start = time.perf_counter()
    for completion, gold in rows:
        fn(completion, gold)
    return len(rows) / (time.perf_counter() - start)


DEGENERATE = {
    "blank lines then an opening diagnosis": lambda n: "\n" * n + "<diagnosis>I10",
    "think tag spam": lambda n: "<think>" * (n // 7),
    "unclosed think then closers": lambda n: "<think>\n" * (n // 16) + "</think>" * (n // 16),
    "pair spam": lambda n: "</think><diagnosis>I10</diagnosis>\n" * (n // 36),
    "whitespace variety": lambda n: " \t\r\x0b\x0c\u00a0\u2003\n" * (n // 8) + "<diagnosis>I10</diagnosis>",
}


def degenerate_seconds(scorer: RewardScorer) -> bool:
    """Print the time to score each degenerate text at three sizes; False when a megabyte takes a second."""
    fast = True
    for name, make in DEGENERATE.items():
        times = []
        for size in (10_000, 100_000, 1_000_000):
            text = make(size)
            start = time.perf_counter()
            scorer.score_rules(text, ["I10"])
            times.append(time.perf_counter() - start)
        fast = fast and times[-1] < 1.0
        print(f"{name}: " + ", ".join(f"{label} {t * 1e3:.1f} ms" for label, t in zip(("10 kB", "100 kB", "1 MB"), times)))
    return fast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="completions to score")
    args = parser.parse_args()
    # The published code pattern, so both sides must agree on every score.
    scorer = RewardScorer(load_reward_config("paper", ["code_pattern=paper"]))
    rows = realistic_completions(args.n)
    for ours_result, (completion, gold) in zip((scorer.score_rules(c, g).total for c, g in rows[:500]), rows[:500]):
        assert ours_result == baseline_score(completion, gold)
    ours = rate(lambda c, g: scorer.score_rules(c, g), rows)
    base = rate(baseline_score, rows)
    print(f"realistic completions (~{sum(len(c) for c, _ in rows) // len(rows)} chars): "
          f"deepicd {ours:,.0f}/s, published-style regex {base:,.0f}/s")
    blank = "\n" * 12_750
    start = time.perf_counter()
    scorer.score_rules(blank, ["I10"])
    ours_blank = time.perf_counter() - start
    print(f"12,750 blank lines: deepicd {ours_blank * 1e3:.2f} ms "
          f"(the published expression needs ~27.8 s on this machine; not re-run here)")
    short = [("ok</think>\n<diagnosis>I10</diagnosis>", ["I10"])] * args.n
    print(f"short completions: deepicd {rate(lambda c, g: scorer.score_rules(c, g), short):,.0f}/s, "
          f"published-style regex {rate(baseline_score, short):,.0f}/s")
    fast = degenerate_seconds(scorer)
    print(("PASS" if fast else "FAIL") + ": every degenerate megabyte scored in under a second")
    return 0 if fast else 1


if __name__ == "__main__":
    raise SystemExit(main())
