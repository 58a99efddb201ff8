"""Chapter guideline excerpts: release JSON files, truncation, and the tabular fallback."""

from __future__ import annotations

import json

import pytest

from guideline_files import RELEASE_CHAPTERS

from deepicd import guidelines, icd


def test_release_folder_chapters(release_guidelines_dir):
    assert guidelines.available_chapters(release_guidelines_dir) == RELEASE_CHAPTERS


def test_a_folder_lists_the_chapters_it_has_files_for(guidelines_dir, tmp_path):
    assert guidelines.available_chapters(guidelines_dir) == RELEASE_CHAPTERS
    (tmp_path / "chapter_3.json").write_text("{}")
    (tmp_path / "notes.json").write_text("{}")
    assert guidelines.available_chapters(tmp_path) == [3]


def test_chapter_file_is_flattened_to_headed_text(guidelines_dir):
    text = guidelines.chapter_excerpt(9, guidelines_dir, max_chars=0)
    lines = text.splitlines()
    assert lines[0] == "Diseases of the circulatory system (I00-I99):"
    assert "  Hypertension:" in lines
    # A `description` key is its heading's own text, written without a label.
    assert lines[lines.index("  Hypertension:") + 1].startswith("    The classification presumes a causal relationship")
    assert any(line.startswith("    Hypertension with Heart Disease: Assign code from I11") for line in lines)
    # Lists become bullets under their heading.
    assert "      - Ambidextrous → dominant" in lines


def test_truncation_is_bounded_and_marked(guidelines_dir):
    whole = guidelines.chapter_excerpt(19, guidelines_dir, max_chars=0)
    assert len(whole) > 5000
    for limit in (50, 500, 3000):
        cut = guidelines.chapter_excerpt(19, guidelines_dir, max_chars=limit)
        assert len(cut) <= limit and cut.endswith("[...]")
        assert whole.startswith(cut[: -len(" [...]")])
    short = guidelines.chapter_excerpt(14, guidelines_dir, max_chars=100_000)
    assert not short.endswith("[...]")


def test_chapters_without_a_file_use_the_tabular_chapter_notes(guidelines_dir):
    text = guidelines.chapter_excerpt(3, guidelines_dir)
    assert text.startswith("Chapter 3 (III): Diseases of the blood")
    assert "- Nutritional anemias (D50-D53)" in text
    noted = guidelines.chapter_excerpt(8, guidelines_dir)  # chapter 8 has a tabular note
    assert "Note: Use an external cause code following the code for the ear condition" in noted
    special = guidelines.chapter_excerpt(22, None)
    assert "Codes for special purposes (U00-U85)" in special


def test_code_excerpt_follows_the_code_to_its_chapter(guidelines_dir):
    assert guidelines.code_excerpt("I214", guidelines_dir) == guidelines.chapter_excerpt(9, guidelines_dir)
    assert guidelines.code_excerpt("K3580", guidelines_dir).startswith("Chapter 11 (XI)")
    assert guidelines.code_excerpt("O9A211", guidelines_dir) == guidelines.chapter_excerpt(15, guidelines_dir)
    assert guidelines.code_excerpt("nonsense", guidelines_dir) == ""


def test_user_folder_in_release_format(tmp_path):
    (tmp_path / "chapter_11.json").write_text(
        json.dumps(
            {"Digestive (K00-K95)": {"Appendicitis": {"description": "Code the  acute form.", "Notes": ["one", "two"]}}}
        )
    )
    (tmp_path / "chapter_9.json").write_text("{ not json")
    assert guidelines.chapter_excerpt(11, tmp_path) == (
        "Digestive (K00-K95):\n  Appendicitis:\n    Code the acute form.\n    Notes:\n      - one\n      - two"
    )
    with pytest.raises(guidelines.GuidelineError, match="chapter_9.json"):
        guidelines.chapter_excerpt(9, tmp_path)
    with pytest.raises(guidelines.GuidelineError, match="not found"):
        guidelines.chapter_excerpt(9, tmp_path / "missing")
    # Without a file for the chapter, the tabular text stands in.
    assert guidelines.chapter_excerpt(4, tmp_path) == guidelines.tabular_chapter_text(4)


def test_every_chapter_has_some_text():
    for chapter in icd.chapters():
        assert guidelines.chapter_excerpt(chapter.number).startswith(f"Chapter {chapter.number} ")


def test_source_names_the_folder_or_the_fallback(guidelines_dir, tmp_path):
    assert guidelines.source(guidelines_dir) == f"files:{guidelines_dir.resolve()}"
    assert guidelines.source(None) == guidelines.source("") == "tabular-fallback"
    assert guidelines.source(tmp_path) == "tabular-fallback"  # a folder without chapter files


def test_whole_chapters_are_kept_with_no_limit(guidelines_dir):
    chapters = guidelines.available_chapters(guidelines_dir)
    whole = {n: guidelines.chapter_excerpt(n, guidelines_dir, max_chars=0) for n in chapters}
    assert not any(text.endswith("[...]") for text in whole.values())
    assert len(whole[19]) > guidelines.DEFAULT_MAX_CHARS


def test_the_default_cuts_8_of_the_18_release_files(release_guidelines_dir):
    """The paper presets pass whole chapters; the 4,000-character default cuts 8 of the release's 18 files."""
    chapters = guidelines.available_chapters(release_guidelines_dir)
    whole = {n: guidelines.chapter_excerpt(n, release_guidelines_dir, max_chars=0) for n in chapters}
    cut = [n for n, text in whole.items() if len(text) > guidelines.DEFAULT_MAX_CHARS]
    assert len(cut) == 8 and 19 in cut
