"""Metric definitions: hand-computed cases, and agreement with scikit-learn, torchmetrics and a per-class loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepicd.evaluate import metrics
from deepicd.evaluate.labels import NIL


def arr(*values: str) -> np.ndarray:
    return np.asarray(values, dtype=object)


def test_hand_computed_case_with_nil_and_a_class_never_predicted():
    # Classes present: A (gold 2, predicted 1, tp 1), B (gold 1, never predicted), C (predicted once, wrong),
    # NIL (predicted once). Per class F1: A 2/3, B 0, C 0, NIL 0.
    gold = arr("A", "A", "B", "C0")
    pred = arr("A", NIL, "C", "C0")
    result = metrics.score_level(gold, pred)
    table = result.per_class().set_index("class")
    assert set(table.index) == {"A", "B", "C", "C0", NIL}
    assert table.loc["A", "precision"] == 1.0 and table.loc["A", "recall"] == 0.5
    assert table.loc["A", "f1"] == pytest.approx(2 / 3)
    assert table.loc["B", "predicted"] == 0 and table.loc["B", "f1"] == 0.0
    assert table.loc[NIL, "support"] == 0 and table.loc[NIL, "f1"] == 0.0
    # C0 is hit once: P = R = F1 = 1.
    assert table.loc["C0", "f1"] == 1.0
    assert result.macro_precision == pytest.approx((1 + 0 + 0 + 1 + 0) / 5)
    assert result.macro_recall == pytest.approx((0.5 + 0 + 0 + 1 + 0) / 5)
    assert result.macro_f1 == pytest.approx((2 / 3 + 1) / 5)
    assert result.micro_f1 == pytest.approx(2 / 4)


def test_classes_absent_from_gold_and_prediction_do_not_dilute_the_macro():
    # Only classes that occur count: a label space of thousands of codes must not change the score.
    result = metrics.score_level(arr("A", "B"), arr("A", "A"))
    assert list(result.classes) == ["A", "B"]
    assert result.macro_f1 == pytest.approx((2 / 3 + 0) / 2)


def test_micro_f1_is_accuracy():
    gold = arr("A", "B", "C", "D", "A")
    pred = arr("A", "B", NIL, "A", "A")
    assert metrics.score_level(gold, pred).micro_f1 == pytest.approx(3 / 5)


def _loop_macro(gold: list[str], pred: list[str]) -> tuple[float, float, float]:
    """Independent per-class loop over the classes present in gold or prediction."""
    classes = sorted(set(gold) | set(pred))
    ps, rs, fs = [], [], []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        ps.append(precision)
        rs.append(recall)
        fs.append(f1)
    return float(np.mean(ps)), float(np.mean(rs)), float(np.mean(fs))


labels = st.sampled_from(["A", "B", "C", "D", "E", NIL])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(labels.filter(lambda x: x != NIL), labels), min_size=1, max_size=40))
def test_macro_matches_a_per_class_loop(pairs):
    gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
    result = metrics.score_level(np.asarray(gold, dtype=object), np.asarray(pred, dtype=object))
    precision, recall, f1 = _loop_macro(gold, pred)
    assert result.macro_precision == pytest.approx(precision)
    assert result.macro_recall == pytest.approx(recall)
    assert result.macro_f1 == pytest.approx(f1)


def test_matches_scikit_learn_with_the_present_classes():
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    names = np.asarray([f"C{i}" for i in range(30)] + [NIL], dtype=object)
    gold = names[rng.integers(0, 25, size=500)]
    pred = np.where(rng.random(500) < 0.4, gold, names[rng.integers(0, 31, size=500)])
    result = metrics.score_level(gold, pred)
    present = sorted(set(gold) | set(pred))
    p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=present, average="macro", zero_division=0)
    assert result.macro_precision == pytest.approx(p)
    assert result.macro_recall == pytest.approx(r)
    assert result.macro_f1 == pytest.approx(f)
    assert result.micro_f1 == pytest.approx(accuracy_score(gold, pred))


def test_matches_torchmetrics_macro_which_drops_absent_classes():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.classification import multiclass_f1_score, multiclass_precision, multiclass_recall

    rng = np.random.default_rng(1)
    num_classes = 40  # a label space larger than what occurs: absent classes must be ignored
    gold = rng.integers(0, 20, size=400)
    pred = np.where(rng.random(400) < 0.5, gold, rng.integers(0, 25, size=400))
    result = metrics.score_level(gold.astype(str).astype(object), pred.astype(str).astype(object))
    g, p = torch.as_tensor(gold), torch.as_tensor(pred)
    kwargs = {"num_classes": num_classes, "average": "macro"}
    assert result.macro_f1 == pytest.approx(float(multiclass_f1_score(p, g, **kwargs)), abs=1e-6)
    assert result.macro_precision == pytest.approx(float(multiclass_precision(p, g, **kwargs)), abs=1e-6)
    assert result.macro_recall == pytest.approx(float(multiclass_recall(p, g, **kwargs)), abs=1e-6)
    micro = multiclass_f1_score(p, g, num_classes=num_classes, average="micro")
    assert result.micro_f1 == pytest.approx(float(micro), abs=1e-6)


def test_majority_baseline_by_hand():
    gold = {
        "chapter": arr("IX", "IX", "X", "XI"),
        "category": arr("I21", "I50", "J18", "K35"),
        "full_code": arr("I214", "I509", "J189", "K359"),
    }
    encoded = {level: metrics.encode(values, values) for level, values in gold.items()}
    train = {"chapter": {"X": 2, "IX": 1}, "category": {"J18": 2, "I21": 1}, "full_code": {"J189": 2, "I214": 1}}
    out = metrics.majority_baselines(encoded, train, "train")
    # Predicting X for all: class X has tp 1, support 1, predicted 4 -> F1 2/5; IX and XI score 0.
    assert out["majority_chapter_macro_f1"] == pytest.approx((2 / 5) / 3)
    # J18 for all: F1 2/5 over 4 classes present.
    assert out["majority_category_macro_f1"] == pytest.approx((2 / 5) / 4)
    assert out["majority_full_code_macro_f1"] == pytest.approx((2 / 5) / 4)
    assert out["majority_labels"] == {"chapter": "X", "category": "J18", "full_code": "J189"}
    assert out["majority_source"] == "train"


def test_majority_label_absent_from_gold_is_a_class_of_its_own():
    encoded = metrics.encode(arr("A", "B"), arr("A", "B"))
    out = metrics.score_encoded(metrics.constant_prediction(encoded, "Z"))
    assert out.macro_f1 == 0.0 and list(out.classes) == ["A", "B", "Z"]


def test_majority_label_breaks_ties_by_smallest_label():
    assert metrics.majority_label({"B": 2, "A": 2, "C": 1}) == "A"


def test_classes_of_a_shared_vocabulary_that_never_occur_are_ignored():
    encoded = metrics.Encoded(arr("A", "B", "UNUSED"), np.asarray([0, 1]), np.asarray([0, 0]))
    result = metrics.score_encoded(encoded)
    assert list(result.classes) == ["A", "B"]
    assert result.macro_f1 == pytest.approx((2 / 3) / 2)


def test_graded_accuracy_is_exclusive():
    gold = {"full_code": arr("I214", "I214", "I214", "I214", "I214"),
            "category": arr("I21", "I21", "I21", "I21", "I21"),
            "chapter": arr("IX", "IX", "IX", "IX", "IX")}
    pred = {"full_code": arr("I214", NIL, NIL, NIL, NIL),
            "category": arr("I21", "I21", "I50", NIL, NIL),
            "chapter": arr("IX", "IX", "IX", "X", NIL)}
    out = metrics.graded(gold, pred)
    assert out == {"exact": 0.2, "same_category": 0.2, "same_chapter": 0.2, "unrelated": 0.4}
    assert sum(out.values()) == pytest.approx(1.0)


def test_terciles_split_gold_classes_by_train_frequency():
    gold = arr("A", "A", "B", "C", "D", "E", "F")
    pred = arr("A", "A", "B", NIL, "D", NIL, NIL)
    result = metrics.score_level(gold, pred)
    frequency = {"A": 50, "B": 40, "C": 30, "D": 20, "E": 10, "F": 5}
    out = metrics.terciles(result, frequency, "train")
    assert out["head"]["classes"] == 2 and out["head"]["macro_f1"] == pytest.approx(1.0)  # A, B
    assert out["medium"]["macro_f1"] == pytest.approx(0.5)  # C 0, D 1
    assert out["tail"]["macro_f1"] == 0.0  # E, F
    assert (out["head"]["min_frequency"], out["tail"]["max_frequency"]) == (40, 10)
    assert out["head"]["support"] + out["medium"]["support"] + out["tail"]["support"] == 7


def test_vote_picks_the_majority_and_the_first_among_ties():
    samples = np.asarray([["A", "B", "B"], ["A", "B", "C"], [NIL, NIL, NIL], ["C", "A", "A"]], dtype=object)
    winner, count = metrics.vote(samples)
    assert winner.tolist() == [1, 0, 0, 1]
    assert count.tolist() == [2, 1, 3, 2]


def test_self_consistency_per_level():
    samples = {
        "full_code": np.asarray([["I214", "I214", "I219"], ["J189", "K359", NIL]], dtype=object),
        "category": np.asarray([["I21", "I21", "I21"], ["J18", "K35", NIL]], dtype=object),
        "chapter": np.asarray([["IX", "IX", "IX"], ["X", "XI", NIL]], dtype=object),
    }
    out = metrics.self_consistency(samples)
    assert out["k"] == 3
    assert out["agreement"]["full_code"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert out["agreement"]["category"] == pytest.approx((1 + 1 / 3) / 2)
    assert out["unanimous"]["category"] == 0.5 and out["unanimous"]["full_code"] == 0.0


def test_an_unscored_nil_is_a_miss_of_the_gold_class_and_no_class_itself():
    from sklearn.metrics import precision_recall_fscore_support

    gold = arr("IX", "IX", "X", "X", "XI")
    pred = arr("IX", NIL, "X", NIL, "X")
    result = metrics.score_level(gold, pred, unscored=(NIL,))
    assert list(result.classes) == ["IX", "X", "XI"]
    # IX: P 1 R 1/2; X: P 1/2 R 1/2; XI: 0. NIL only costs recall.
    assert result.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert result.micro_f1 == pytest.approx(2 / 5)
    expected = precision_recall_fscore_support(gold, pred, labels=["IX", "X", "XI"], average="macro", zero_division=0)
    assert (result.macro_precision, result.macro_recall, result.macro_f1) == pytest.approx(expected[:3])
    # The same answers with NIL as a class: a fourth class with F1 0.
    assert metrics.score_level(gold, pred).macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 0 + 0) / 4)


def test_a_constant_baseline_keeps_the_unscored_classes():
    encoded = metrics.encode(arr("IX", "X"), arr(NIL, "X"), unscored=(NIL,))
    baseline = metrics.constant_prediction(encoded, "XI")
    assert baseline.classes.tolist() == ["IX", "X", NIL, "XI"]
    assert baseline.scored.tolist() == [True, True, False, True]
    assert metrics.score_encoded(baseline).classes.tolist() == ["IX", "X", "XI"]


def test_mass_terciles_follow_figure_four():
    # Chapter supports 20, 15, 14, 13, 12, 10, 8, 5, 3 (100 notes): the two largest cover the first third.
    sizes = {"IX": 20, "X": 15, "XI": 14, "XIV": 13, "IV": 12, "II": 10, "V": 8, "XIII": 5, "I": 3}
    gold = arr(*[c for c, n in sizes.items() for _ in range(n)])
    pred = gold.copy()
    pred[gold == "I"] = "IX"  # the smallest chapter is never hit
    result = metrics.score_level(gold, pred)
    out = metrics.mass_terciles(result)
    assert out["head"]["members"] == ["IX", "X"] and out["head"]["mass_share"] == pytest.approx(0.35)
    assert out["medium"]["members"] == ["XI", "XIV", "IV"] and out["medium"]["mass_share"] == pytest.approx(0.39)
    assert out["tail"]["members"] == ["II", "V", "XIII", "I"]
    assert out["tail"]["macro_f1"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert out["head"]["macro_f1"] == pytest.approx((2 * 20 / 43 + 1) / 2)  # IX: 20 hits, 23 predicted
    # Equal-count terciles of the same classes: 3 + 3 + 3.
    equal = metrics.terciles(result, sizes, "train")
    assert [equal[t]["classes"] for t in metrics.TERCILES] == [3, 3, 3]
