"""Stand-ins for `vllm.LLM` that behave like it where the replica machinery is concerned.

Like a real vLLM engine, each one starts a child process of its own (its
"engine core", which does the generating) when it is built, so a replica run as
a daemonic process fails exactly as it would with vLLM. The classes live in a
plain module, not a test file, because every replica is a freshly started
interpreter that imports them by name.

Each engine writes `<pid>.json` into the folder named by REPORTS_ENV: the
replica's process id, its engine core's, and the CUDA_VISIBLE_DEVICES it saw.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

REPORTS_ENV = "DEEPICD_TEST_ENGINE_REPORTS"


def completion(prompt: list[int], params: dict, index: int) -> str:
    """The deterministic text the stand-in generates for one prompt and sample index."""
    return f"len={len(prompt)} sum={sum(prompt)} seed={params['seed']} top_k={params['top_k']} #{index}"


def _summary(prompt: list[int], params: dict) -> tuple[list[str], list[int], int]:
    texts = [completion(prompt, params, index) for index in range(params["n"])]
    return texts, [len(text.split()) for text in texts], len(prompt)


def _core(link, ignore_sigterm: bool) -> None:
    """The engine core: answers chunks until told to stop or its engine is gone."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            message = link.recv()
        except EOFError:
            return
        if message is None:
            return
        prompts, params = message
        link.send([_summary(prompt, params) for prompt in prompts])


class StandInEngine:
    """Generates `completion(...)` texts in a child process, as vLLM generates in its engine core."""

    ignore_sigterm = False

    def __init__(self, **engine):
        context = multiprocessing.get_context("spawn")
        self._link, core_end = context.Pipe()
        self._core = context.Process(target=_core, args=(core_end, self.ignore_sigterm), name="standin-engine-core")
        self._core.start()
        core_end.close()
        self.gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        _report(self._core.pid, self.gpus, engine)

    def run(self, prompts: list[list[int]], params: dict):
        self._link.send((prompts, params))
        return self._link.recv()

    def close(self) -> None:
        self._link.send(None)
        self._core.join(timeout=5)


class FailingEngine(StandInEngine):
    """On the replica pinned to GPU 1, raises after its engine core started (as a model that does not fit would)."""

    def __init__(self, **engine):
        super().__init__(**engine)
        if self.gpus == "1":
            raise RuntimeError("CUDA out of memory (stand-in)")


class DyingEngine(StandInEngine):
    """On the replica pinned to GPU 1, the whole replica process dies at its first chunk."""

    def run(self, prompts, params):
        if self.gpus == "1":
            os._exit(3)
        return super().run(prompts, params)


class StuckEngine(StandInEngine):
    """Never finishes shutting down, and its engine core ignores SIGTERM: only a kill ends them."""

    ignore_sigterm = True

    def close(self) -> None:
        while True:
            time.sleep(1)


def _report(core_pid: int, gpus: str, engine: dict) -> None:
    folder = os.environ.get(REPORTS_ENV)
    if folder:
        record = {"replica": os.getpid(), "core": core_pid, "gpus": gpus, "model": engine.get("model")}
        partial = Path(folder, f"{os.getpid()}.part")
        partial.write_text(json.dumps(record), encoding="utf-8")
        partial.replace(partial.with_suffix(".json"))  # whole or absent, even if the replica is killed now
