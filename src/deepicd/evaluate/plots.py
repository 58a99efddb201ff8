"""PNG figures of an evaluation, drawn from metrics.json alone.

Plots read only the metrics dictionary, so they can be redrawn for any old
evaluation folder without rescoring. matplotlib runs on its Agg backend:
evaluation nodes have no display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepicd.manifest import atomic_open

PER_CHAPTER = "per_chapter_f1.png"
CONFUSION = "chapter_confusion.png"
TERCILES = "terciles_f1.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")


def per_chapter_f1(metrics: dict, path: Path) -> Path:
    """F1 per gold chapter (bars) with its support (grey bars on the right axis)."""
    plt = _pyplot()
    rows = [r for r in metrics["per_chapter"] if r["support"] > 0]
    names = [r["chapter"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.2))
    try:
        support_ax = ax.twinx()
        support_ax.bar(x + 0.2, [r["support"] for r in rows], width=0.4, color="#bbbbbb", label="support")
        support_ax.set_ylabel("support (notes)")
        ax.bar(x - 0.2, [r["f1"] * 100 for r in rows], width=0.4, color="#2a6f97", label="F1")
        ax.set_ylim(0, 100)
        ax.set_ylabel("F1 (%)")
        ax.set_xticks(x, names, rotation=0 if len(rows) < 15 else 60)
        ax.set_xlabel("ICD-10-CM chapter (gold)")
        ax.set_zorder(support_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
        chapter = metrics["chapter"]
        ax.set_title(f"Per-chapter F1 (macro F1 {chapter['macro_f1'] * 100:.1f}%, n={metrics['n']})")
        handles = ax.get_legend_handles_labels()[0] + support_ax.get_legend_handles_labels()[0]
        ax.legend(handles, ["F1", "support"], loc="upper right", fontsize=8)
        _save(fig, path)
    finally:
        plt.close(fig)
    return path


def chapter_confusion(metrics: dict, path: Path) -> Path:
    """Row-normalised chapter confusion: each gold chapter's share of predictions per predicted chapter."""
    plt = _pyplot()
    confusion = metrics["chapter_confusion"]
    counts = np.asarray(confusion["counts"], dtype=float).reshape(len(confusion["gold"]), len(confusion["predicted"]))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    width = max(5.0, 0.38 * counts.shape[1] + 2.5)
    height = max(4.0, 0.34 * counts.shape[0] + 1.8)
    fig, ax = plt.subplots(figsize=(width, height))
    try:
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(counts.shape[1]), confusion["predicted"], rotation=60, fontsize=8)
        ax.set_yticks(range(counts.shape[0]), confusion["gold"], fontsize=8)
        ax.set_xlabel("predicted chapter (NIL: no valid answer in the label space)")
        ax.set_ylabel("gold chapter")
        if counts.size <= 700:
            for (i, j), value in np.ndenumerate(counts):
                if value:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=6, color=colour)
        fig.colorbar(image, ax=ax, label="share of the gold chapter's notes")
        ax.set_title("Chapter confusion (rows sum to 1)")
        _save(fig, path)
    finally:
        plt.close(fig)
    return path


def terciles_f1(metrics: dict, path: Path) -> Path:
    """Macro F1 of head, medium and tail classes per level: equal-count terciles (by train frequency)
    and, beside them when present, terciles by sample mass (the paper's Figure 4 grouping)."""
    plt = _pyplot()
    panels = [("terciles", "equal-count terciles ({source} counts)")]
    if metrics.get("terciles_by_mass"):
        panels.append(("terciles_by_mass", "terciles by sample mass (evaluated notes)"))
    groups = ("head", "medium", "tail")
    x = np.arange(len(groups))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    try:
        for ax, (key, title) in zip(axes[0], panels):
            levels = list(metrics[key])
            width = 0.8 / max(len(levels), 1)
            for i, level in enumerate(levels):
                values = [metrics[key][level][g]["macro_f1"] * 100 for g in groups]
                ax.bar(x + (i - (len(levels) - 1) / 2) * width, values, width=width, label=level.replace("_", " "))
            ax.set_xticks(x, groups)
            ax.set_ylabel("macro F1 (%)")
            source = next(iter(metrics[key].values()))["frequency_source"] if levels else "train"
            ax.set_title("Macro F1 by class frequency: " + title.format(source=source), fontsize=9)
            ax.legend(fontsize=8)
        _save(fig, path)
    finally:
        plt.close(fig)
    return path


def draw_all(metrics: dict, out: Path) -> list[Path]:
    """Every figure into `out`; returns the files written."""
    return [
        per_chapter_f1(metrics, out / PER_CHAPTER),
        chapter_confusion(metrics, out / CONFUSION),
        terciles_f1(metrics, out / TERCILES),
    ]
