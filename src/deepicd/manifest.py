"""What a stage leaves beside its outputs so a result can be traced back: versions, checksums, config.

Kept tiny and dependency-free; every stage that writes a manifest uses these helpers.
"""

from __future__ import annotations

import contextlib
import glob
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

from deepicd.errors import UserError

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


def _temporary_prefix(target: Path) -> str:
    """`.NAME.tmp-PID-`: the temporaries of one target, each naming the process that writes it."""
    return f".{target.name}.tmp-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clear_stale(target: str | Path) -> list[Path]:
    """Remove the temporaries beside `target` whose process is gone (a killed run leaves them); returns them."""
    target = Path(target)
    removed = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.tmp-*-*"):
        pid = path.name[len(target.name) + 6:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A handle on a temporary file beside `path`, renamed onto `path` only if the block succeeds.

    Readers never see half a file, and a crash leaves the previous version (or nothing).
    Large outputs such as predictions.jsonl are streamed through it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path)
    handle, temp = tempfile.mkstemp(prefix=_temporary_prefix(path), dir=path.parent)
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


def make_shareable(folder: str | Path) -> None:
    """Give everyone read access to what `folder` holds, as to every other output.

    Some writers create owner-only files (safetensors writes model.safetensors
    0600), which would leave a model that a colleague or a job under another
    user cannot load.
    """
    folder = Path(folder)
    folder.chmod(folder.stat().st_mode | 0o755)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o755 if path.is_dir() else 0o644))


@contextlib.contextmanager
def staged_directory(target: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside `target` that takes its place only when the block succeeds.

    Model and output folders are written this way, so a crash mid-write never
    leaves a half-written folder where the next stage would read it; whatever
    goes wrong, the temporary is removed, and those of killed runs are cleared
    on the next start. With `replace=False`, a `target` that appeared meanwhile
    is kept and the run fails.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(target)
    staging = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=target.parent))
    try:
        yield staging
        make_shareable(staging)  # mkdtemp makes it owner-only; an output folder is meant to be shared
        if target.exists() and not replace:
            raise UserError(f"{target} appeared during the run; not replacing it")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=target.parent))
            old.rmdir()
            target.rename(old)  # aside, then in: a failed second rename puts the old folder back
            try:
                staging.rename(target)
            except BaseException:
                old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
