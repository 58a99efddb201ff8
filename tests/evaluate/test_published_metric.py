"""`deepicd evaluate` against an independent computation of the published per-level metric.

The reference below is written from the description of the published
evaluation (REFERENCE §6), with plain Python and scikit-learn, sharing no code
with `deepicd.evaluate` or `deepicd.icd`:

* the answer is the raw diagnosis text, stripped, dots removed;
* full code: the answer if it is in the code vocabulary, else NIL;
* category: its first three characters if they are in the category vocabulary, else NIL;
* chapter: the chapter of the code the answer is or starts with (then followed by
  a character other than a letter or digit), from the ICD-10-CM chapter ranges
  written out here; no chapter (a miss) for anything else: the published
  empty -> chapter I, free text -> string-compared chapter and NIL -> XIV quirks
  are the ones deepicd fixes;
* vocabularies: the label codes plus every gold code (the published code needs
  each gold in its vocabulary), their categories, their chapters, with NIL at
  category and full-code level but not at chapter level;
* macro P/R/F1 over the classes that occur in gold or prediction, micro F1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from evalkit import answer, split_table, write_jsonl
from sklearn.metrics import f1_score, precision_recall_fscore_support
from split_writer import write_split
from typer.testing import CliRunner

from deepicd.cli import app

# ICD-10-CM chapters by category range (REFERENCE §7), Roman numerals as deepicd reports them.
CHAPTERS = [
    ("I", "A00", "B99"), ("II", "C00", "D49"), ("III", "D50", "D89"), ("IV", "E00", "E89"), ("V", "F01", "F99"),
    ("VI", "G00", "G99"), ("VII", "H00", "H59"), ("VIII", "H60", "H95"), ("IX", "I00", "I99"), ("X", "J00", "J99"),
    ("XI", "K00", "K95"), ("XII", "L00", "L99"), ("XIII", "M00", "M99"), ("XIV", "N00", "N99"), ("XV", "O00", "O9A"),
    ("XVI", "P00", "P96"), ("XVII", "Q00", "Q99"), ("XVIII", "R00", "R99"), ("XIX", "S00", "T88"), ("XX", "V00", "Y99"),
    ("XXI", "Z00", "Z99"), ("XXII", "U00", "U85"),
]
CODE = re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}")

TRAIN = ["I214", "I214", "I214", "J189", "J189", "K359", "N390", "C4A10", "E119", "A419"]
VAL = ["R079", "I214", "M5116"]
# (gold, raw diagnosis text or None for a completion without any pair)
CASES = [
    ("I214", "I214"),                        # exact
    ("I214", "I21.9"),                       # code outside the vocabulary, its category inside
    ("J189", "J18.9"),                       # exact, written with a dot
    ("J189", ""),                            # empty answer: published chapter I, here a miss
    ("J189", None),                          # no pair at all
    ("K359", "K35.80"),                      # category K35 inside
    ("N390", "N18.6"),                       # category N18 outside, chapter XIV inside
    ("N390", "PNE"),                         # free text: published chapter XVI, here a miss
    ("E119", "e11.9"),                       # lower case: no code
    ("E119", "E11.9 - type 2 diabetes"),     # a code followed by text: category and chapter, no full code
    ("A419", "NIL"),                         # NIL itself: published chapter XIV, here a miss
    ("C4A10", "C4A.10"),                     # letter in third position, exact
    ("R079", "R07.9"),                       # gold of a code not seen in train
    ("I214", "R079"),                        # wrong code of another chapter, inside the vocabulary
    ("J189", "Z79.4"),                       # chapter XXI outside every vocabulary
    ("I214", "J44.1 COPD exacerbation"),     # leading code outside, chapter X inside
    ("K359", "R07.9 chest pain"),            # leading code, category R07 inside
    ("D649", "D64.9"),                       # a test-only gold code
    ("I214", "M51.16"),                      # a code seen only in val
]


def chapter_of(code: str) -> str | None:
    category = code[:3]
    for roman, first, last in CHAPTERS:
        if first <= category <= last:
            return roman
    return None


def leading(text: str) -> str | None:
    """The code the answer is, or starts with before a character that is no letter or digit."""
    token = re.match(r"[A-Za-z0-9]*", text).group(0)
    return token if CODE.fullmatch(token) else None


def published_labels(raw: str | None, codes: set[str]) -> tuple[str | None, str, str]:
    """(chapter or None for a miss, category, full code) of one answer under the published projection."""
    text = "" if raw is None else raw.strip().replace(".", "")
    categories = {c[:3] for c in codes}
    chapters = {chapter_of(c) for c in codes}
    full = text if text in codes else "NIL"
    category = text[:3] if text[:3] in categories else "NIL"
    code = leading(text) if text else None
    chapter = chapter_of(code) if code else None
    if raw is None:  # the published code reads a missing pair as ""
        full, category = "NIL", "NIL"
    return (chapter if chapter in chapters else None), category, full


def reference_scores(gold: list[str], pred: list[str | None], nil_class: bool) -> dict[str, float]:
    """Macro P/R/F1 over the classes in gold or prediction, and micro F1, with scikit-learn."""
    classes = sorted({g for g in gold} | {p for p in pred if p is not None})
    if not nil_class:
        classes = [c for c in classes if c != "NIL"]
    predicted = [p if p is not None else "__miss__" for p in pred]
    precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, labels=classes, average="macro", zero_division=0)
    micro = f1_score(gold, predicted, labels=sorted(set(gold) | set(predicted)), average="micro", zero_division=0)
    return {"macro_precision": precision, "macro_recall": recall, "macro_f1": f1, "micro_f1": micro}


def reference(codes: set[str]) -> dict[str, dict[str, float]]:
    gold = [g for g, _ in CASES]
    vocabulary = codes | set(gold)
    labels = [published_labels(raw, vocabulary) for _, raw in CASES]
    return {
        "chapter": reference_scores([chapter_of(g) for g in gold], [lab[0] for lab in labels], nil_class=False),
        "category": reference_scores([g[:3] for g in gold], [lab[1] for lab in labels], nil_class=True),
        "full_code": reference_scores(gold, [lab[2] for lab in labels], nil_class=True),
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", split_table(TRAIN, 1000))
    write_split(data, "val", split_table(VAL, 2000))
    write_split(data, "test", split_table([g for g, _ in CASES], 3000))
    counts = pd.Series(TRAIN).value_counts()
    pd.DataFrame({"code": list(counts.index) + ["NIL"], "train_count": list(counts.values) + [0]}).to_csv(
        data / "labels.csv", index=False
    )
    rows = [
        {"id": f"n{i}", "gold": [gold], "completion": "no answer here" if raw is None else answer(raw)}
        for i, (gold, raw) in enumerate(CASES)
    ]
    write_jsonl(tmp_path / "outputs.jsonl", rows)
    return tmp_path


@pytest.mark.parametrize(
    ("options", "codes"),
    [
        ([], set(TRAIN)),  # default: the train label space (labels.csv)
        (["labels=all-splits"], set(TRAIN) | set(VAL)),  # the paper's space: every split's first codes
        (["--config", "paper"], set(TRAIN) | set(VAL)),
    ],
)
def test_scores_equal_an_independent_computation_of_the_published_metric(folder, options, codes):
    out = folder / "eval"
    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(folder / "outputs.jsonl"), "--data",
                                      str(folder / "data"), "--out", str(out), "bootstrap.samples=0", "plots=false",
                                      *options])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    expected = reference(codes)
    for level, scores in expected.items():
        for name, value in scores.items():
            assert metrics[level][name] == pytest.approx(value), (level, name)
    assert metrics["n"] == len(CASES)
    assert metrics["leading_code_rate"] == pytest.approx(3 / len(CASES))


def test_the_reference_itself_on_a_case_computed_by_hand():
    # Two notes: I214 answered exactly, J189 answered with free text. Chapter: IX 1, X 0 (a miss, no NIL class).
    gold = ["I214", "J189"]
    scores = reference_scores([chapter_of(g) for g in gold], ["IX", None], nil_class=False)
    assert scores["macro_f1"] == pytest.approx(0.5) and scores["micro_f1"] == pytest.approx(0.5)
    scores = reference_scores(gold, ["I214", "NIL"], nil_class=True)
    assert scores["macro_f1"] == pytest.approx(1 / 3)  # I214 1, J189 0, NIL 0
