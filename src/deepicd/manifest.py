"""What a stage leaves beside its outputs so a result can be traced back: versions, checksums, config.

Kept tiny and dependency-free; every stage that writes a manifest uses these helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Iterator

PACKAGES = ("deepicd", "torch", "transformers", "trl", "accelerate", "datasets", "vllm", "openai", "simple-icd-10-cm")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result (absent ones are left out)."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A handle on a temporary file beside `path`, renamed onto `path` only if the block succeeds.

    Readers never see half a file, and a crash leaves the previous version (or nothing).
    Large outputs such as predictions.jsonl are streamed through it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding) as out:
            yield out
        os.chmod(temp, 0o644)  # mkstemp files are owner-only; outputs are meant to be shared
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_open`)."""
    with atomic_open(path) as out:
        out.write(text)


def write_json(path: str | Path, data: object) -> None:
    """Write JSON to `path` atomically (see `atomic_open`)."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """A temporary folder beside `target` that replaces it only when the block succeeds.

    Model folders are written this way, so a crash mid-save never leaves a
    half-written model where the next stage would load it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it owner-only; a model folder is meant to be shared
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
