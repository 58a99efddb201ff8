"""The reward of a GRPO run over its steps: a JSONL log and a PNG of every component, beside the model.

TRL keeps what it logs in `trainer.state.log_history` (the total as `reward`,
each reward function as `rewards/<name>/mean`) and forgets it when the process
ends, unless a checkpoint was saved. Writing it out is what lets a reader see
whether a run learned, and lets the demo check that the reward rose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from deepicd.manifest import atomic_open

LOG = "reward_log.jsonl"
FIGURE = "reward_curves.png"
_PREFIX, _SUFFIX = "rewards/", "/mean"


def steps(history: Iterable[dict[str, Any]]) -> list[dict[str, float]]:
    """One row per logged training step: `step`, `reward` and each component's mean, by its short name."""
    rows = []
    for entry in history:
        if "reward" not in entry:
            continue
        row = {"step": int(entry.get("step", len(rows) + 1)), "reward": float(entry["reward"])}
        for key, value in entry.items():
            if key.startswith(_PREFIX) and key.endswith(_SUFFIX):
                row[key[len(_PREFIX):-len(_SUFFIX)]] = float(value)
        rows.append(row)
    return rows


def components(rows: list[dict[str, float]]) -> list[str]:
    """The series a plot shows: the total first, then the components in the order they were logged."""
    names = ["reward"]
    for row in rows:
        names += [key for key in row if key not in names and key != "step"]
    return names


def write(history: Iterable[dict[str, Any]], out: Path) -> tuple[Path, Path | None]:
    """reward_log.jsonl, and reward_curves.png when at least one step was logged; returns both paths."""
    rows = steps(history)
    log_path = Path(out) / LOG
    with atomic_open(log_path) as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))
    if not rows:
        return log_path, None
    return log_path, plot(rows, Path(out) / FIGURE)


def read(path: Path) -> list[dict[str, float]]:
    """The rows of a reward_log.jsonl (or of the one in a GRPO output folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def quarter_means(rows: list[dict[str, float]], key: str = "reward") -> tuple[float, float]:
    """Mean of `key` over the first and over the last quarter of the steps (at least one step each)."""
    if not rows:
        raise ValueError("no logged steps")
    size = max(1, len(rows) // 4)
    first, last = rows[:size], rows[-size:]
    return sum(r[key] for r in first) / size, sum(r[key] for r in last) / size


def plot(rows: list[dict[str, float]], path: Path) -> Path:
    """One panel per series (each has its own scale: the outcome spans -1..75, the format term 0..1)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = components(rows)
    fig, axes = plt.subplots(len(names), 1, figsize=(6, 1.8 * len(names)), sharex=True, squeeze=False)
    x = [row["step"] for row in rows]
    for axis, name in zip(axes[:, 0], names):
        values = [row.get(name, float("nan")) for row in rows]
        axis.plot(x, values, color="tab:blue" if name == "reward" else "tab:orange", linewidth=1)
        window = max(1, len(values) // 10)
        if window > 1:
            smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                      for i in range(len(values))]
            axis.plot(x, smooth, color="black", linewidth=1.5)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("training step")
    fig.suptitle("GRPO reward per step (thin: logged mean; thick: moving average)")
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
