"""Label space and level projection, including the published quirks we fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepicd.errors import UserError
from deepicd.evaluate.labels import NIL, UNKNOWN_CHAPTER, LabelSpace, gold_levels, project_predictions, read_labels

SPACE = LabelSpace(frozenset({"I214", "J189", "K359", "A419", "C4A10"}), "test")


def project(*predictions, **kwargs):
    levels, valid = project_predictions(list(predictions), SPACE, **kwargs)
    return {level: values.tolist() for level, values in levels.items()}, valid.tolist()


def test_empty_prediction_is_nil_at_every_level_not_chapter_one():
    # The published code sent "" through string comparison and counted it as chapter I (A00-B99).
    levels, valid = project("")
    assert levels == {"chapter": [NIL], "category": [NIL], "full_code": [NIL]}
    assert valid == [False]


def test_missing_pair_is_nil():
    levels, valid = project(None)
    assert levels["chapter"] == [NIL] and valid == [False]


def test_free_text_is_nil_not_a_chapter():
    # "PNE" compared as a string would fall in chapter XVI (P00-P96).
    levels, valid = project("PNE", "pneumonia", "i214")
    assert levels["chapter"] == [NIL, NIL, NIL]
    assert levels["category"] == [NIL, NIL, NIL]
    assert valid == [False, False, False]  # lower case stays invalid, as in the paper


def test_nil_never_becomes_chapter_fourteen():
    levels, _ = project(NIL)
    assert levels["chapter"] == [NIL]  # the published code mapped NIL to chapter XIV (N00-N99)


def test_valid_code_outside_the_space_keeps_its_category_and_chapter_by_default():
    levels, valid = project("I219", "J440", "I214")
    assert levels["full_code"] == [NIL, NIL, "I214"]
    assert levels["category"] == ["I21", NIL, "I21"]  # J44 is not a category of the label space
    assert levels["chapter"] == ["IX", "X", "IX"]  # but chapter X is
    assert valid == [True, True, True]


def test_nil_scope_all_makes_outside_codes_nil_everywhere():
    levels, valid = project("I219", "I214", nil_scope="all")
    assert levels == {"chapter": [NIL, "IX"], "category": [NIL, "I21"], "full_code": [NIL, "I214"]}
    assert valid == [True, True]


def test_chapter_outside_the_space_is_nil():
    levels, _ = project("Z794")
    assert levels["chapter"] == [NIL]


def test_letter_in_third_position_needs_the_release_pattern():
    release, valid = project("C4A10")
    assert release["full_code"] == ["C4A10"] and release["chapter"] == ["II"] and valid == [True]
    paper, valid = project("C4A10", paper_pattern=True)
    assert paper["full_code"] == [NIL] and valid == [False]


def test_gold_levels():
    levels = gold_levels(np.asarray(["I214", "C4A10", "J189", "???"], dtype=object))
    assert levels["chapter"].tolist() == ["IX", "II", "X", UNKNOWN_CHAPTER]
    assert levels["category"].tolist() == ["I21", "C4A", "J18", "???"]


def test_labels_csv_drops_nil_and_normalises(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"code": ["I21.4", " J189 ", "NIL"], "count": [3, 2, 0]}).to_csv(path, index=False)
    space = read_labels(path)
    assert space.full_code == frozenset({"I214", "J189"})
    assert space.category == frozenset({"I21", "J18"})
    assert space.chapter == frozenset({"IX", "X"})


def test_labels_csv_errors_name_the_file_and_column(tmp_path):
    with pytest.raises(UserError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv")
    path = tmp_path / "labels.csv"
    pd.DataFrame({"icd_code": ["I214"]}).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"no column 'code'.*icd_code"):
        read_labels(path)
    pd.DataFrame({"code": ["NIL"]}).to_csv(path, index=False)
    with pytest.raises(UserError, match="no codes besides NIL"):
        read_labels(path)


def test_extending_the_space_reports_new_gold_codes():
    extended, added = SPACE.extended(["I214", "R079"])
    assert added == ["R079"] and "R079" in extended.full_code and "XVIII" in extended.chapter


def test_without_a_label_space_every_well_formed_code_is_its_own_class():
    levels, valid = project_predictions(["I219", "J440", "PNE", None], None)
    assert levels["full_code"].tolist() == ["I219", "J440", NIL, NIL]
    assert levels["chapter"].tolist() == ["IX", "X", NIL, NIL]
    assert valid.tolist() == [True, True, False, False]


def test_a_code_followed_by_text_earns_its_category_and_chapter_as_published():
    # "I21.4 - NSTEMI" is normalised to "I214 - NSTEMI"; the published code projected that raw string.
    levels, valid = project("I214 - NSTEMI", "J441 copd", "I214NSTEMI", "i214 - nstemi")
    assert levels["category"] == ["I21", NIL, NIL, NIL]  # J44 is no category of the label space
    assert levels["chapter"] == ["IX", "X", NIL, NIL]
    assert levels["full_code"] == [NIL, NIL, NIL, NIL]  # the whole string is never a code
    assert valid == [False, False, False, False]


def test_leading_code_can_count_at_every_level_or_not_at_all():
    code, _ = project("I214 - NSTEMI", leading="code")
    assert code == {"chapter": ["IX"], "category": ["I21"], "full_code": ["I214"]}
    off, _ = project("I214 - NSTEMI", leading="off")
    assert off == {"chapter": [NIL], "category": [NIL], "full_code": [NIL]}
    strict, _ = project("I214 - NSTEMI", nil_scope="all")
    assert strict == {"chapter": [NIL], "category": [NIL], "full_code": [NIL]}


def test_leading_code_rows_are_marked():
    from deepicd.evaluate.labels import factorize_predictions

    projected = factorize_predictions(["I214 - NSTEMI", "I214", None, "PNE"], SPACE)
    assert projected.leading[projected.codes].tolist() == [True, False, False, False]
