"""`deepicd.serving.transformers_server`: a real server on the tiny model, and how a start can fail.

The real server is slow (it loads torch and the model); the failure paths run
small stand-in executables and take a second or two. Every test checks that no
process of the server's group outlives the block.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from deepicd import serving


def record_processes(monkeypatch) -> list[subprocess.Popen]:
    """Make `deepicd.serving` start its processes through a Popen that remembers them."""
    started: list[subprocess.Popen] = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(serving.subprocess, "Popen", Recording)
    return started


def group_is_gone(pgid: int, grace_s: float = 5.0) -> bool:
    """No live process is left in the group, allowing a moment for signalled members to exit.

    Members outlived by their leader are re-parented to init, which may leave them as
    zombies for a while; a zombie runs nothing and counts as gone.
    """
    deadline = time.monotonic() + grace_s
    while live_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def live_members(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: ask the kernel, counting zombies as members
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        try:
            state, _parent, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # not a process, or it ended while being read
        if int(group) == pgid and state != "Z":
            return True
    return False


def stand_in_cli(folder: Path, body: str) -> Path:
    """A shell script that plays the `transformers` CLI."""
    script = folder / "transformers"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return script


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serves_the_tiny_model_then_stops_its_whole_process_group(tiny_model, tmp_path, monkeypatch):
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("transformers serve needs fastapi and uvicorn (pip install 'deepicd[serve]')")
    if not serving.transformers_cli().exists():
        pytest.skip("no 'transformers' CLI in this environment")
    started = record_processes(monkeypatch)
    client = httpx.Client(trust_env=False, timeout=120)
    with serving.transformers_server(tmp_path / "serve", model=tiny_model) as url:
        root = url.removesuffix("/v1")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert client.get(f"{root}/health").json() == {"status": "ok"}
        assert client.get(f"{url}/models").json()["object"] == "list"
        messages = [{"role": "user", "content": "CHIEF COMPLAINT: fever"}]
        reply = client.post(f"{url}/chat/completions", json={"model": str(tiny_model), "messages": messages,
                                                              "max_tokens": 4, "temperature": 0})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert 1 <= body["usage"]["completion_tokens"] <= 4
        # Pinned to the folder on its command line: another model is refused, nothing is fetched.
        refused = client.post(f"{url}/chat/completions", json={"model": "Qwen/Qwen2.5-0.5B-Instruct",
                                                                "messages": messages, "max_tokens": 2})
        assert refused.status_code == 400 and "pinned" in refused.text
        (process,) = started
        assert process.poll() is None
    assert process.poll() is not None
    assert group_is_gone(process.pid)
    with pytest.raises(httpx.ConnectError):
        client.get(f"{root}/health", timeout=2)
    assert (tmp_path / "serve" / "serve.log").stat().st_size > 0


def test_a_server_that_exits_raises_with_its_command_and_log_tail(tmp_path, monkeypatch):
    cli = stand_in_cli(tmp_path, 'echo "serve called with: $*"\necho "offline=$HF_HUB_OFFLINE"\nexit 3')
    monkeypatch.setattr(serving, "transformers_cli", lambda: cli)
    started = record_processes(monkeypatch)
    port = serving.free_port()
    with pytest.raises(serving.ServerError, match="exited with code 3") as error:
        with serving.transformers_server(tmp_path / "serve", port=port, model=tmp_path / "my-model"):
            pytest.fail("the block must not run when the server did not start")
    message = str(error.value)
    assert f"serve called with: serve {tmp_path / 'my-model'} --host 127.0.0.1 --port {port} --device cpu" in message
    assert "offline=1" in message and str(tmp_path / "serve" / "serve.log") in message
    (process,) = started
    assert group_is_gone(process.pid)


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path, monkeypatch):
    cli = stand_in_cli(tmp_path, 'echo "still loading"\nsleep 60')
    monkeypatch.setattr(serving, "transformers_cli", lambda: cli)
    started = record_processes(monkeypatch)
    with pytest.raises(serving.ServerError, match=r"did not answer on port \d+ within 1 s(.|\n)*still loading"):
        with serving.transformers_server(tmp_path / "serve", startup_timeout_s=1):
            pytest.fail("the block must not run when the server did not start")
    (process,) = started
    assert process.poll() is not None
    assert group_is_gone(process.pid)  # the shell and its `sleep` child both


def test_a_missing_cli_is_named_and_nothing_is_started(tmp_path, monkeypatch):
    monkeypatch.setattr(serving, "transformers_cli", lambda: tmp_path / "no-such-dir" / "transformers")
    started = record_processes(monkeypatch)
    with pytest.raises(serving.ServerError, match="'transformers' CLI not found"):
        with serving.transformers_server(tmp_path / "serve"):
            pytest.fail("the block must not run when the server did not start")
    assert started == []


def test_free_port_is_a_bindable_loopback_port():
    import socket

    port = serving.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
