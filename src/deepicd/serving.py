"""Run `transformers serve` on loopback for as long as a block of code needs it.

The judge and the distillation teacher talk to OpenAI-compatible servers. On a
GPU node that is `vllm serve`; on a laptop or in CI it is `transformers serve`
hosting a local model folder on the CPU. This module starts such a server on a
free loopback port, waits until it answers, and always stops it (with its whole
process group) when the block ends, even on an exception or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

from deepicd.errors import DeepicdError


class ServerError(DeepicdError, RuntimeError):
    """The server could not be started or did not become healthy in time."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def transformers_cli() -> Path:
    """The `transformers` executable of the running interpreter's environment."""
    return Path(sys.executable).parent / "transformers"


@contextlib.contextmanager
def transformers_server(
    workdir: Path,
    *,
    port: int | None = None,
    startup_timeout_s: float = 180.0,
    model: Path | None = None,
) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:PORT/v1`) of a running `transformers serve`.

    The server loads models per request by name; pass a model *folder* as the
    request's `model`. With `model` given, the server is pinned to that folder
    (named on its command line): it loads it before it reports healthy, so the
    first request does not pay for loading, and it refuses requests that name
    any other model (HTTP 400). `workdir` holds its log (`serve.log`) and
    an empty hub cache, so the server never reaches for the network. A server
    that exits or stays silent for `startup_timeout_s` raises `ServerError` with
    the tail of its log.
    """
    executable = transformers_cli()
    if not executable.exists():
        raise ServerError(f"'transformers' CLI not found beside {sys.executable}; install transformers")
    workdir.mkdir(parents=True, exist_ok=True)
    hub_cache = workdir / "hub-cache"
    hub_cache.mkdir(exist_ok=True)
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    log_path = workdir / "serve.log"
    with log_path.open("w") as log:
        command = [str(executable), "serve"]
        if model is not None:
            command.append(str(model))
        command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so stopping it stops its workers too
        )
        try:
            _wait_healthy(process, port, startup_timeout_s, log_path)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            _stop(process)


def _wait_healthy(process: subprocess.Popen, port: int, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServerError(f"transformers serve exited with code {process.returncode}; log {log_path}:\n{tail}")
        try:
            # trust_env=False: a proxy set in the environment must not intercept a loopback check.
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServerError(
                f"transformers serve did not answer on port {port} within {timeout_s:.0f} s; log {log_path}:\n{tail}"
            )
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
