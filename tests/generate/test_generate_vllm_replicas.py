"""Data-parallel vLLM replicas, run with stand-in engines that start a child process as vLLM's engine does.

vLLM itself needs a GPU; what these tests check is everything around it: that
replicas may start engine processes of their own, share the work, come back
with every result, report a replica that fails or dies by name instead of
hanging, and leave no process behind (replica or engine core) once closed.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import pytest
import vllm_standin

from deepicd.errors import UserError
from deepicd.generate import GenerationRequest, GeneratorConfig, SamplingConfig
from deepicd.generate import vllm_backend
from deepicd.generate.render import prompt_ids, stop_token_ids
from deepicd.generate.vllm_backend import VLLMGenerator, sampling_params_kwargs
from deepicd.prompts import task

pytestmark = pytest.mark.timeout(60)

SAMPLE = SamplingConfig(temperature=0.9, top_k=20, max_new_tokens=8, n=2, seed=7)


@pytest.fixture()
def reports(tmp_path, monkeypatch) -> Path:
    """Where the stand-in engines write their process ids; two visible GPUs, "0" and "1"."""
    monkeypatch.setenv(vllm_standin.REPORTS_ENV, str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    return tmp_path


def _config(**changes) -> GeneratorConfig:
    settings = {"backend": "vllm", "model": "stand-in", "data_parallel_size": 2, "chunk_size": 1, "progress": False}
    return GeneratorConfig(**{**settings, **changes})


def _requests(count: int) -> list[GenerationRequest]:
    notes = [f"CHIEF COMPLAINT: {'cough ' * i}" for i in range(count)]
    return [GenerationRequest(key=f"hadm-{i}", messages=task.messages(note)) for i, note in enumerate(notes)]


def _engines(folder: Path) -> list[dict]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        import psutil
    except ImportError:
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def _still_running(pids: list[int], within_s: float = 5.0) -> list[int]:
    """The pids still alive after `within_s` (an orphaned engine core may take a moment to be reaped)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _all_pids(folder: Path, generator: VLLMGenerator | None = None) -> list[int]:
    pids = [pid for engine in _engines(folder) for pid in (engine["replica"], engine["core"])]
    return sorted(set(pids + (generator.replica_pids if generator is not None else [])))


def test_replicas_serve_every_request_and_leave_nothing_behind(reports, tiny_tokenizer):
    requests = _requests(6)
    generator = VLLMGenerator(_config(), tokenizer=tiny_tokenizer, engine_class=vllm_standin.StandInEngine)
    try:
        results = {result.key: result for result in generator.generate(requests, SAMPLE)}
        again = {result.key: result.completions for result in generator.generate(requests[:2], SAMPLE)}
    finally:
        pids = _all_pids(reports, generator)
        generator.close()

    params = sampling_params_kwargs(SAMPLE, stop_token_ids(tiny_tokenizer))
    assert sorted(results) == sorted(request.key for request in requests)
    for request in requests:
        ids = prompt_ids(tiny_tokenizer, request)
        expected = [vllm_standin.completion(ids, params, index) for index in range(2)]
        assert results[request.key].error is None
        assert results[request.key].completions == expected
        assert results[request.key].prompt_tokens == len(ids)
    assert again == {key: results[key].completions for key in again}  # a second call reads only its own chunks

    engines = _engines(reports)
    assert sorted(engine["gpus"] for engine in engines) == ["0", "1"]  # one replica per GPU group, as before
    assert {engine["model"] for engine in engines} == {"stand-in"}
    assert len(pids) == 4  # two replicas, each with its engine core
    assert _still_running(pids) == []


def test_a_replica_whose_engine_fails_to_start_is_named_and_everything_is_stopped(reports, tiny_tokenizer):
    started = time.monotonic()
    with pytest.raises(UserError, match=r"replica 1 \(CUDA_VISIBLE_DEVICES=1\) failed to start its engine: "
                                        r"RuntimeError: CUDA out of memory"):
        VLLMGenerator(_config(), tokenizer=tiny_tokenizer, engine_class=vllm_standin.FailingEngine)
    assert time.monotonic() - started < 30
    assert _still_running(_all_pids(reports)) == []


def test_a_replica_that_dies_mid_run_stops_the_run_by_name(reports, tiny_tokenizer):
    generator = VLLMGenerator(_config(), tokenizer=tiny_tokenizer, engine_class=vllm_standin.DyingEngine)
    pids = _all_pids(reports, generator)
    with pytest.raises(UserError, match=r"replica 1 \(CUDA_VISIBLE_DEVICES=1\) exited with code 3"):
        list(generator.generate(_requests(8), SAMPLE))
    assert _still_running(pids) == []
    with pytest.raises(UserError, match="closed"):
        list(generator.generate(_requests(1), SAMPLE))
    generator.close()  # closing again is harmless


def test_close_terminates_then_kills_replicas_that_do_not_stop(reports, tiny_tokenizer, monkeypatch):
    monkeypatch.setattr(vllm_backend, "_STOP_S", 0.5)
    monkeypatch.setattr(vllm_backend, "_KILL_S", 0.5)
    generator = VLLMGenerator(_config(), tokenizer=tiny_tokenizer, engine_class=vllm_standin.StuckEngine)
    results = list(generator.generate(_requests(2), SAMPLE))
    assert all(result.error is None for result in results)
    pids = _all_pids(reports, generator)
    started = time.monotonic()
    generator.close()
    assert time.monotonic() - started < 10
    assert _still_running(pids) == []


def test_a_dropped_generator_stops_its_replicas(reports, tiny_tokenizer):
    generator = VLLMGenerator(_config(), tokenizer=tiny_tokenizer, engine_class=vllm_standin.StandInEngine)
    pids = _all_pids(reports, generator)
    del generator
    gc.collect()
    assert _still_running(pids) == []


def test_one_engine_in_process_is_closed_with_its_engine_core(reports, tiny_tokenizer):
    generator = VLLMGenerator(_config(data_parallel_size=1), tokenizer=tiny_tokenizer,
                              engine_class=vllm_standin.StandInEngine)
    result, = generator.generate(_requests(1), SamplingConfig(temperature=0, n=3))
    assert len(result.completions) == 3 and len(set(result.completions)) == 1  # greedy: decoded once, repeated
    core = _engines(reports)[0]["core"]
    assert _engines(reports)[0]["replica"] == os.getpid() and generator.replica_pids == []
    generator.close()
    assert _still_running([core]) == []
