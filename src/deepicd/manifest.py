"""What a stage leaves beside its outputs so a result can be traced back, and how outputs are written.

Every stage writes one `manifest.json` through `record` and `write`, so every
manifest has the same keys (`KEYS`): what ran (`stage`, and the `method` of
the model it trained or evaluated), when, how (`argv`, `seed`, `config`), from
what (`inputs`, each with its size and sha256), into what (`outputs`), with
which prompt and package versions, and what came of it (`result`, the one
stage-specific key). Keys that do not apply to a stage are present and null,
so a reader never guesses which spelling a stage used.

Outputs are written whole or not at all (`atomic_open`, `staged_directory`).
Kept dependency-free.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping

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


KEYS = ("stage", "method", "created", "finished", "argv", "seed", "config", "inputs", "outputs", "prompts",
        "versions", "result")
FILE = "manifest.json"


def describe_input(path: str | Path | None) -> dict | None:
    """Path, size and sha256 of a file; of a folder (a model), its file count, size and latest change.

    A folder is not hashed (a model's weights can be tens of gigabytes), but a
    model retrained in place changes its size or time, so a rerun can tell.
    A name (a hub id, a served model) is recorded as given.
    """
    if path is None or path == "":
        return None
    p = Path(path)
    if p.is_file():
        return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
    if p.is_dir():
        stats = [f.stat() for f in p.rglob("*") if f.is_file()]
        return {"path": str(p.resolve()), "kind": "folder", "files": len(stats),
                "bytes": sum(s.st_size for s in stats), "modified_ns": max((s.st_mtime_ns for s in stats), default=0)}
    return {"path": str(path), "kind": "name"}


def describe_outputs(folder: str | Path, names: Iterable[str] | None = None, *, hashed: bool = True) -> dict:
    """`{relative path: {bytes, sha256}}` of the files under `folder`, or under those of its `names` that exist.

    `hashed=False` records sizes only: hashing tens of gigabytes of weights would
    add minutes to every training run for a check nobody needs.
    """
    folder = Path(folder)
    paths = []
    for top in [folder / name for name in names] if names is not None else [folder]:
        paths += [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file() and p != folder / FILE]
    described = {}
    for path in sorted(p for p in paths if p.is_file()):
        entry = {"bytes": path.stat().st_size}
        if hashed:
            entry["sha256"] = sha256_file(path)
        described[path.relative_to(folder).as_posix()] = entry
    return described


def record(
    stage: str,
    *,
    config: Mapping | None,
    inputs: Mapping[str, str | Path | None] = {},
    method: str | None = None,
    seed: int | None = None,
    prompts: Mapping | None = None,
    result: Mapping | None = None,
    packages: tuple[str, ...] = PACKAGES,
    created: str | None = None,
) -> dict:
    """A stage's manifest with every key of `KEYS`; `outputs` and `finished` are filled by `write`.

    `stage` is the command that ran (`preprocess`, `sft`, `train-grpo`, ...);
    `method` what the model it trained or evaluated is, for Table 3 (`grpo`,
    `sft`, `sft-grpo`, `baseline`); `inputs` maps a role ("train", "labels")
    to a file or folder, described by `describe_input`.
    """
    return {
        "stage": stage,
        "method": method,
        "created": created or now(),
        "finished": None,
        "argv": sys.argv[1:],
        "seed": seed,
        "config": dict(config) if config is not None else None,
        "inputs": {role: described for role, value in inputs.items() if (described := describe_input(value))},
        "outputs": None,
        "prompts": dict(prompts) if prompts is not None else None,
        "versions": versions(packages),
        "result": dict(result) if result is not None else None,
    }


def write(folder: str | Path, entry: dict, *, outputs: dict | None = None, finished: bool = True) -> Path:
    """Write `entry` (from `record`) as FOLDER/manifest.json, atomically; returns its path.

    `outputs` (from `describe_outputs`) is recorded as given; `finished=False`
    leaves `finished` null, for a manifest written before a launch that may
    crash.
    """
    missing = [key for key in KEYS if key not in entry]
    if missing:
        raise ValueError(f"a manifest needs every key of manifest.KEYS; missing {missing}")
    if outputs is not None:
        entry["outputs"] = outputs
    entry["finished"] = now() if finished else None
    path = Path(folder) / FILE
    write_json(path, entry)
    return path


def read(path: str | Path) -> dict:
    """A manifest as a dict; {} when the file is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


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
            out.flush()
            os.fsync(out.fileno())  # on disk before the rename, so a crash never leaves a renamed empty file
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


def new_staging(target: str | Path) -> Path:
    """An empty temporary folder beside `target`, named for this process, to be put in its place by `commit_staging`.

    The temporaries that killed runs left beside `target` are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(target)
    return Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=target.parent))


def commit_staging(staging: str | Path, target: str | Path, *, replace: bool = True) -> None:
    """Put the complete folder `staging` in `target`'s place, readable by everyone.

    An old `target` is moved aside before the rename and put back if the rename
    fails, so there is always one complete folder at `target`. With
    `replace=False`, a `target` that appeared meanwhile is kept and this fails.
    """
    staging, target = Path(staging), Path(target)
    make_shareable(staging)  # mkdtemp makes it owner-only; an output folder is meant to be shared
    if target.exists() and not replace:
        raise UserError(f"{target} appeared during the run; not replacing it")
    if not target.exists():
        staging.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=target.parent))
    old.rmdir()
    target.rename(old)  # aside, then in: a failed second rename puts the old folder back
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(target: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside `target` that takes its place only when the block succeeds.

    Model and output folders are written this way, so a crash mid-write never
    leaves a half-written folder where the next stage would read it; whatever
    goes wrong, the temporary is removed, and those of killed runs are cleared
    on the next start. With `replace=False`, a `target` that appeared meanwhile
    is kept and the run fails.
    """
    staging = new_staging(target)
    try:
        yield staging
        commit_staging(staging, target, replace=replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
