"""The judge's on-disk cache: shared by threads and processes without losing a rating."""

from __future__ import annotations

import subprocess
import sys
import threading

from deepicd.rewards.judge_cache import JudgeCache

WRITER = """
import sys
from deepicd.rewards.judge_cache import JudgeCache
cache = JudgeCache(sys.argv[1])
for i in range(40):
    cache.put_many({f"{sys.argv[2]}-{i}-{j}": (i + j) % 5 + 1 for j in range(10)}, "m")
    assert cache.get(f"{sys.argv[2]}-{i}-0") == i % 5 + 1
"""


def _write(cache: JudgeCache, prefix: str) -> None:
    for i in range(40):
        cache.put_many({f"{prefix}-{i}-{j}": (i + j) % 5 + 1 for j in range(10)}, "m")


def test_concurrent_writers_in_threads_and_processes(tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"proc{n}"]) for n in range(2)]
    cache = JudgeCache(tmp_path)
    threads = [threading.Thread(target=_write, args=(cache, f"thread{n}")) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [process.wait(60) for process in processes] == [0, 0]
    assert len(cache) == 5 * 40 * 10
    keys = [f"{prefix}-{i}-{j}" for prefix in ("proc0", "thread2") for i in range(40) for j in range(10)]
    found = cache.get_many(keys)  # more keys than one query may bind: read in chunks
    assert found == {key: (int(key.split("-")[1]) + int(key.split("-")[2])) % 5 + 1 for key in keys}


def test_missing_keys_and_overwrite(tmp_path):
    cache = JudgeCache(tmp_path / "nested" / "folder")
    assert cache.get("absent") is None and cache.get_many([]) == {}
    cache.put_many({"a": 2}, "m")
    cache.put_many({"a": 5}, "m")
    cache.put_many({}, "m")
    assert cache.get("a") == 5 and len(cache) == 1
    cache.close()
    assert JudgeCache(tmp_path / "nested" / "folder").get("a") == 5


def test_scores_keep_their_type(tmp_path):
    cache = JudgeCache(tmp_path)
    cache.put_many({"half": 4.5, "whole": 4, "float-whole": 3.0}, "m")
    found = JudgeCache(tmp_path).get_many(["half", "whole", "float-whole"])
    assert found == {"half": 4.5, "whole": 4, "float-whole": 3}
    assert [type(found[key]) for key in ("half", "whole", "float-whole")] == [float, int, int]
