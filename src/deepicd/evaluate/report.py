"""report.md: the metrics of one evaluation as a page a person reads.

Rendered from the metrics dictionary only, like the plots, so the page and
metrics.json always say the same thing. Percentages carry one decimal, as in
the paper's tables.
"""

from __future__ import annotations

from deepicd.evaluate import plots
from deepicd.evaluate.labels import LEVELS
from deepicd.evaluate.metrics import GRADES, TERCILES

LEVEL_NAMES = {"chapter": "Chapter", "category": "Category", "full_code": "Full code"}


def pct(value: float) -> str:
    return f"{value * 100:.1f}"


def _interval(metrics: dict, level: str, score: str) -> str:
    bounds = metrics.get("intervals", {}).get(level, {}).get(score)
    return f" [{pct(bounds[0])}, {pct(bounds[1])}]" if bounds else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render(metrics: dict, *, title: str = "Evaluation", source: str = "", figures: bool = True) -> str:
    intervals = metrics.get("intervals", {})
    has_ci = any(level in intervals for level in LEVELS)
    ci_note = (
        f" Brackets: {intervals['confidence'] * 100:.0f}% percentile bootstrap interval over notes "
        f"({intervals['samples']} resamples, seed {intervals['seed']})."
        if has_ci
        else ""
    )
    space = metrics["label_space"]
    lines = [f"# {title}", ""]
    if source:
        lines += [source, ""]
    lines += [
        f"- Notes scored: {metrics['n']}" + (f", {metrics['k']} samples each (scored: {metrics['selection']})" if metrics["k"] > 1 else ""),
    ]
    dropped = metrics.get("prompt_filter") or {}
    if dropped.get("max_prompt_tokens"):
        lines.append(
            f"- Prompt filter: {dropped['dropped']} of {dropped['notes']} notes dropped before scoring, their prompt "
            f"being longer than {dropped['max_prompt_tokens']} tokens"
        )
    answer = "a code in a `<diagnosis>` block, else a code in the text" if metrics.get("prompt") == "code-only" else "a pair with a valid code"
    lines += [
        f"- Well-formed answers ({answer}): {pct(metrics['format_rate'])}%",
        f"- Label space: {space['source']} ({space['size']['full_code']} codes, {space['size']['category']} categories, "
        f"{space['size']['chapter']} chapters); predictions outside it are NIL "
        + ("at the level where they fall outside" if space["nil_scope"] == "level" else "at every level")
        + "; NIL is a class at category and full-code level only (at chapter level it is a miss of the gold chapter)",
    ]
    if metrics.get("leading_code_rate"):
        mode = space.get("leading_code", "levels")
        reading = {"levels": "their category and chapter count, their full code is NIL (as published)",
                   "code": "the leading code counts at every level"}.get(mode, "unparseable")
        lines.append(f"- Answers that are a code followed by other text: {pct(metrics['leading_code_rate'])}% ({reading})")
    if space["gold_outside"]:
        examples = ", ".join(space["gold_outside_examples"])
        lines.append(f"- Gold codes missing from the label space, added to it: {space['gold_outside']} ({examples})")
    lines += ["", "## Scores (%)", "", "Macro averages over the classes present in gold or prediction; micro F1 equals accuracy." + ci_note, ""]
    baselines = metrics["baselines"]
    rows = []
    for level in LEVELS:
        scores = metrics[level]
        rows.append(
            [LEVEL_NAMES[level]]
            + [pct(scores[s]) + _interval(metrics, level, s) for s in ("macro_recall", "macro_precision", "macro_f1", "micro_f1")]
            + [pct(metrics["nil_rate"][level]), pct(baselines[f"majority_{level}_macro_f1"])]
        )
    lines += _table(["Level", "Macro R", "Macro P", "Macro F1", "Micro F1", "NIL predicted", "Majority macro F1"], rows)
    lines += ["", "NIL predicted at chapter level: answers with no chapter in the label space (counted as misses, not as a class)."]
    majority = baselines["majority_labels"]
    lines += [
        "",
        f"Majority baseline: always the most frequent {baselines['majority_source']} label "
        f"(chapter {majority['chapter']}, category {majority['category']}, code {majority['full_code']}).",
        "",
        "## Graded accuracy (%)",
        "",
    ]
    graded = metrics["graded"]
    lines += _table([g.replace("_", " ") for g in GRADES], [[pct(graded[g]) for g in GRADES]])
    lines += ["", "Exclusive: the exact code; else the same category; else the same chapter; else unrelated (NIL included).", ""]
    lines += ["## Frequency terciles (macro F1 %)", "", "### Equal-count terciles", ""]
    rows = []
    for level, split in metrics["terciles"].items():
        rows.append(
            [LEVEL_NAMES[level]]
            + [f"{pct(split[t]['macro_f1'])} ({split[t]['classes']} classes, freq {split[t]['min_frequency']}-{split[t]['max_frequency']})" for t in TERCILES]
        )
    lines += _table(["Level", "Head", "Medium", "Tail"], rows)
    source_name = next(iter(metrics["terciles"].values()))["frequency_source"] if metrics["terciles"] else "train"
    lines += ["", f"Equal-count terciles: gold classes ordered by {source_name} frequency and split into three groups of equal size.", ""]
    by_mass = metrics.get("terciles_by_mass") or {}
    if by_mass:
        lines += ["### Terciles by sample mass (Figure 4)", ""]
        rows = []
        for level, split in by_mass.items():
            cells = []
            for t in TERCILES:
                group = split[t]
                members = f": {', '.join(group['members'])}" if level == "chapter" and group.get("members") else ""
                cells.append(f"{pct(group['macro_f1'])} ({group['classes']} classes, {pct(group.get('mass_share', 0.0))}% of notes{members})")
            rows.append([LEVEL_NAMES[level]] + cells)
        lines += _table(["Level", "Head", "Medium", "Tail"], rows)
        lines += [
            "",
            "Terciles by sample mass, as in the paper's Figure 4: gold classes ordered by their number of evaluated "
            "notes, the head holding the most frequent ones until a third of the notes is covered, the medium group "
            "the next third, the tail the rest.",
            "",
        ]
    if "self_consistency" in metrics:
        consistency = metrics["self_consistency"]
        lines += [f"## Self-consistency over {consistency['k']} samples (%)", ""]
        lines += _table(
            ["Level", "Agreement with the majority vote", "Unanimous notes"],
            [[LEVEL_NAMES[lv], pct(consistency["agreement"][lv]), pct(consistency["unanimous"][lv])] for lv in LEVELS],
        )
        lines += ["", "Samples are compared as parsed codes, before the label space; no answer or an invalid one is NIL.", ""]
    lines += ["## Per chapter", ""]
    lines += _table(
        ["Chapter", "Range and title", "P %", "R %", "F1 %", "Support", "Predicted"],
        [
            [r["chapter"], r["title"], pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), str(r["support"]), str(r["predicted"])]
            for r in metrics["per_chapter"]
        ],
    )
    if figures:
        lines += [
            "",
            "## Figures",
            "",
            f"![Per-chapter F1]({plots.PER_CHAPTER})",
            "",
            f"![Chapter confusion]({plots.CONFUSION})",
            "",
            f"![Terciles]({plots.TERCILES})",
        ]
    return "\n".join(lines) + "\n"
