"""Worker processes and fast paths give the same answers as the plain in-process code."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

from mimickit import standard_sections, summary

from deepicd.mimic import cutter, ontology, sections, verl_rows
from deepicd.prompts import task


def _texts(n: int) -> list[str | None]:
    texts = [summary(standard_sections(complaint=f"complaint {i}")) for i in range(n)]
    texts[3] = None  # a note row with an empty text
    texts[5] = summary([("Physical Exam", "VS: normal")])  # no core section
    return texts


def _run(note_cutter: cutter.NoteCutter, texts, size: int) -> list:
    results = []
    with note_cutter:
        for start in range(0, len(texts), size):
            for tag, notes in note_cutter.feed(start, texts[start: start + size]):
                results.append((tag, notes))
        results.extend(note_cutter.drain())
    assert [tag for tag, _ in results] == list(range(0, len(texts), size))
    return [note for _, notes in results for note in notes]


def test_workers_return_what_this_process_computes_in_order():
    texts = _texts(40)
    here = _run(cutter.NoteCutter(sections.ADMISSION_SECTIONS, sections.REQUIRED_ANY, workers=0), texts, 3)
    there = _run(cutter.NoteCutter(sections.ADMISSION_SECTIONS, sections.REQUIRED_ANY, workers=2, start_after=5),
                 texts, 3)
    assert here == there
    assert here[3] is None and here[5] is None
    assert here[7].text.startswith("CHIEF COMPLAINT: complaint 7")


def test_workers_start_only_for_a_large_extract():
    small = cutter.NoteCutter(sections.ADMISSION_SECTIONS, sections.REQUIRED_ANY, workers=2, start_after=10)
    with small:
        done = list(small.feed(0, _texts(8)))
        assert small._pool is None and [tag for tag, _ in done] == [0]  # cut here, returned at once
        done += small.feed(1, _texts(8))
        assert small._pool is not None
        done += small.drain()
    assert [tag for tag, _ in done] == [0, 1]
    assert done[0][1] == done[1][1]


def test_a_lost_worker_task_is_redone_here():
    texts = _texts(6)

    class BrokenPool:
        def submit(self, *args, **kwargs):
            future = Future()
            future.set_exception(BrokenProcessPool("worker died"))
            return future

        def shutdown(self, **kwargs):
            pass

    note_cutter = cutter.NoteCutter(sections.ADMISSION_SECTIONS, sections.REQUIRED_ANY, workers=0)
    note_cutter._pool = BrokenPool()
    note_cutter._limit = 10
    assert _run(note_cutter, texts, 2) == [sections.admission_note(t or "") for t in texts]


def test_verl_prompt_matches_task_messages_on_both_paths(monkeypatch):
    notes = ["CHIEF COMPLAINT: {x} 100%", "PRESENT ILLNESS: ü\n\nALLERGIES: none", ""]
    fast = verl_rows.table("val", notes, ["I10", "J189", "R51"], [1, 2, 3], [7, 8, 9], "src", first_index=4)
    assert [row["prompt"] for row in fast.to_pylist()] == [task.messages(n) for n in notes]
    assert [row["extra_info"]["index"] for row in fast.to_pylist()] == [4, 5, 6]

    def shouting(note):  # a prompt that transforms the note cannot be assembled from templates
        return [{"role": "user", "content": note.upper()}]

    monkeypatch.setattr(verl_rows.task, "messages", shouting)
    verl_rows._templates.cache_clear()
    try:
        slow = verl_rows.table("val", notes, ["I10", "J189", "R51"], [1, 2, 3], [7, 8, 9], "src")
        assert verl_rows._templates() is None
        assert [row["prompt"] for row in slow.to_pylist()] == [shouting(n) for n in notes]
    finally:
        verl_rows._templates.cache_clear()


def test_ontology_service_answers_from_its_side_process_or_here():
    codes = ["I214", "C4A0", "I214", "2500"]
    with ontology.OntologyService(background=True) as service:
        remote = service.describe(codes)
    local = ontology.describe(sorted(set(codes)))
    assert remote == local
    assert local.codes["I214"].chapter == 9 and local.codes["I214"].in_release
    assert local.codes["C4A0"].chapter == 2 and local.codes["C4A0"].category == "C4A"
    assert local.codes["2500"].chapter is None and not local.codes["2500"].in_release

    service = ontology.OntologyService(background=False)
    service._process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert service.describe(codes) == local  # the side process failed: answered here
    assert service._process is None
