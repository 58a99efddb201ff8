"""Chapter guideline files in the published release's format, written here in our own words, for the tests.

The release itself is not part of this repository; tests of its particular
contents run when `DEEPICD_GUIDELINES_DIR` names its folder (see conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

# Chapters the published guideline release has a file for (3, 8, 11 and 22 have none).
RELEASE_CHAPTERS = [1, 2, 4, 5, 6, 7, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]


def _chapter_file(number: int) -> dict:
    """One chapter in the release's layout (heading -> subheading -> text, `description`, lists), in our words."""
    from deepicd import icd

    chapter = next(c for c in icd.chapters() if c.number == number)
    sections = {
        "General rules": {
            "description": f"Codes of chapter {number} are assigned from the documentation of the encounter.",
            "Sequencing": "List first the condition chiefly responsible for the admission.",
        }
    }
    if number == 9:
        sections = {
            "Hypertension": {
                "description": "The classification presumes a causal relationship between hypertension and the "
                "heart or kidney conditions it links with 'with', unless the record says they are unrelated.",
                "Hypertension with Heart Disease": "Assign code from I11 when hypertension and heart failure "
                "are both documented, with an additional code for the type of heart failure.",
                "Dominance": ["Left side affected, right-handed → nondominant", "Ambidextrous → dominant"],
            },
            **sections,
        }
    if number == 19:  # a long chapter: over 11,000 characters, so that cutting it shows
        sections.update({
            f"Injury topic {i}": {
                "description": f"Rule {i} for coding injuries: the seventh character records the encounter, "
                "and each injury is coded as specifically as the documentation allows.",
                "Examples": [f"Example {i}.{j}: a fracture of a named bone, initial encounter" for j in range(4)],
            }
            for i in range(40)
        })
    return {f"{chapter.title} ({chapter.range})": sections}


def write_guideline_files(folder: Path) -> Path:
    """chapter_<n>.json for every chapter of the release, in `folder`."""
    for number in RELEASE_CHAPTERS:
        (folder / f"chapter_{number}.json").write_text(json.dumps(_chapter_file(number), ensure_ascii=False, indent=2))
    return folder
