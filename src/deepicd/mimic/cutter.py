"""Cutting admission notes in worker processes, results in input order.

Section splitting is pure Python, about 40 µs per note: one core does a
330k-note extract in a quarter of a minute, and it is the largest part of a run
once the tables stream. Worker processes take it off the core that reads the
CSV blocks. Results come back in the order the notes went in, so the output
does not depend on the number of workers.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator, Sequence

from deepicd.mimic.sections import AdmissionNote, admission_note

NOTES_PER_TASK = 2_000
START_AFTER = 40_000  # notes cut here before workers start (about two seconds of one core)


def cut(texts: Sequence[str | None], sections: tuple[str, ...], require_any: tuple[str, ...]) -> list:
    """Admission notes of a list of discharge summaries (None where a note has no core section)."""
    return [admission_note(text or "", sections, require_any) for text in texts]


class NoteCutter:
    """`feed` lists of summaries (of about NOTES_PER_TASK) with a tag; get (tag, notes) back in feeding order
    from `feed` and, at the end, `drain`. With `workers` < 1 everything runs in this process.

    Workers start only once `start_after` notes have been fed: a spawned worker costs a few
    tenths of a second of CPU to start, more than it saves on a small extract.
    """

    def __init__(self, sections: tuple[str, ...], require_any: tuple[str, ...], workers: int = 0,
                 start_after: int = START_AFTER):
        self.sections, self.require_any = sections, require_any
        self._pending: deque = deque()  # (tag, texts, future or None): texts kept to redo a lost task
        self._pool = None
        self._workers = workers
        self._start_after = start_after
        self._fed = 0
        self._limit = 2 * max(workers, 1)

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
        self._workers = 0  # never start twice

    def feed(self, tag: object, texts: Sequence[str | None]) -> Iterator[tuple[object, list[AdmissionNote | None]]]:
        """Queue one task (a list of summaries); yields the finished tasks that are due, oldest first."""
        future = None
        self._fed += len(texts)
        if self._pool is None and self._workers > 0 and self._fed > self._start_after:
            self._start()
        if self._pool is not None:
            try:
                future = self._pool.submit(cut, texts, self.sections, self.require_any)
            except (BrokenProcessPool, RuntimeError):
                self._give_up()
        self._pending.append((tag, texts, future))
        while len(self._pending) > (self._limit if self._pool is not None else 0):
            yield self._pop()

    def drain(self) -> Iterator[tuple[object, list[AdmissionNote | None]]]:
        while self._pending:
            yield self._pop()

    def _pop(self) -> tuple[object, list[AdmissionNote | None]]:
        tag, texts, future = self._pending.popleft()
        if future is not None:
            try:
                return tag, future.result()
            except BrokenProcessPool:
                # a worker died (out of memory, or a script that spawns without a __main__ guard):
                # finish in this process rather than fail the run
                self._give_up()
        return tag, cut(texts, self.sections, self.require_any)

    def _give_up(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "NoteCutter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
