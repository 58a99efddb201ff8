"""ICD-10-CM layer: read from the release, robust to any string MIMIC can hold."""

from __future__ import annotations

import pytest

from deepicd import icd


def test_normalize_strips_padding_and_dots_but_keeps_case():
    assert icd.normalize("  M51.16 ") == "M5116"
    assert icd.normalize("I10    ") == "I10"
    assert icd.normalize("m51.16") == "m5116"
    assert icd.normalize(None) == ""


def test_published_pattern_and_the_fix():
    for code in ["I10", "M5116", "S72001A", "Z3A00"]:
        assert icd.is_well_formed(code)
    for code in ["C4A0", "M1A00X0", "O9A11", "Z3A00", "QA0015", "D3A010"]:
        assert icd.is_well_formed(code)
    assert not icd.is_well_formed("C4A0", paper_pattern=True)
    assert not icd.is_well_formed("QA0015", paper_pattern=True)
    for code in ["", "i10", "M5", "M51.16", "I10XXXXX", "C4B0", "PNE", "10"]:
        assert not icd.is_well_formed(code)


def test_irregular_categories_come_from_the_release():
    expected = {"C4A", "C7A", "C7B", "D3A", "M1A", "O9A", "Z3A"}
    assert expected <= icd.irregular_categories()
    assert all(not icd.PAPER_CODE_PATTERN.fullmatch(code) for code in icd.irregular_categories())


def test_chapters_are_the_22_of_the_release():
    chapters = icd.chapters()
    assert [c.number for c in chapters] == list(range(1, 23))
    assert chapters[0].range == "A00-B99" and chapters[0].roman == "I"
    assert chapters[14].range == "O00-O9A" and chapters[14].roman == "XV"
    assert chapters[21].range == "U00-U85" and chapters[21].roman == "XXII"


@pytest.mark.parametrize(
    ("code", "number"),
    [("A419", 1), ("C4A0", 2), ("D3A010", 2), ("D500", 3), ("H6690", 8), ("H5710", 7), ("I214", 9), ("M5116", 13),
     ("O9A111", 15), ("QA0015", 17), ("S72001A", 19), ("U071", 22), ("Z3A00", 21)],
)
def test_chapter_of_a_code(code, number):
    assert icd.chapter(code).number == number


def test_retired_codes_are_reported_not_fatal():
    # 42731 is ICD-9; I10X and M511 with an invented tail are not in the release.
    assert not icd.exists("M51169")
    assert icd.description("M51169") is None
    assert icd.chapter("M51169").number == 13
    assert icd.nearest_known("M51169") == "M5116"
    assert "not in the ICD-10-CM release" in icd.tabular_text("M51169")
    assert icd.chapter("42731") is None
    assert icd.chapter("") is None
    assert icd.tabular_text("###") == "###: not in the ICD-10-CM release used here (retired or unknown code)."


def test_hierarchy_and_text():
    assert icd.category("M51.16") == "M51"
    assert icd.block("M5116") == "M50-M54"
    assert icd.ancestors("M5116") == ["M511", "M51", "M50-M54", "13"]
    text = icd.tabular_text("M5116")
    assert "Intervertebral disc disorders with radiculopathy, lumbar region" in text
    assert "Sciatica due to intervertebral disc disorder" in text  # an inclusion term of the parent
    assert icd.is_billable("M5116") and not icd.is_billable("M51")
    assert "M5116" in icd.leaf_codes() and "M51" in icd.categories()
