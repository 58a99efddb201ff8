"""What a stage does with its output folder before it writes anything: one rule for every stage.

- An output that is one of the inputs, or a folder holding one, is refused: writing it would destroy
  what the stage reads (`refuse_overlap`).
- A folder that holds a finished run of the same stage, with the same settings and the same inputs,
  is that run: the stage does nothing and says so (`previous_run` returns its manifest).
- A folder that holds anything else is kept unless `--overwrite` is given; the error says what differs.
- With `--overwrite` the stage runs anew; its outputs replace the old ones only once they are complete
  (`deepicd.manifest.staged_directory`, `atomic_open`).

Resumable stages (`sft`, `train-grpo`, `distill`) continue an unfinished run in the same folder
instead; `--overwrite` makes them start over (`start_resumable`, `clear`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Mapping

from deepicd import manifest
from deepicd.errors import UserError

OVERWRITE_HINT = "pass --overwrite (overwrite=true) to replace it, or give another --out"


def refuse_overlap(outputs: Iterable[str | Path], inputs: Mapping[str, str | Path | None], flag: str = "--out") -> None:
    """UserError when an output is an input, or a folder the stage replaces holds one."""
    for output in outputs:
        target = Path(output).resolve()
        for role, value in inputs.items():
            if value is None or value == "" or not Path(value).exists():
                continue
            source = Path(value).resolve()
            if source == target:
                raise UserError(f"{flag} {output} is the input {role} ({value}); write the output elsewhere")
            if target in source.parents:
                raise UserError(f"{flag} {output} holds the input {role} ({value}), which replacing it would "
                                "delete; write the output elsewhere")


def _plain(config: Mapping) -> dict:
    """The config as its manifest records it (JSON types, paths as strings)."""
    return json.loads(json.dumps(dict(config), default=str))


def mismatch(record: dict, stage: str, config: Mapping, inputs: Mapping[str, str | Path | None],
             ignore: Iterable[str] = (), every_input: bool = True) -> str | None:
    """Why the run `record` describes is not this one (other config keys or inputs), or None when it is.

    With `every_input` an input recorded then and not given now (or the reverse) is a difference too;
    a stage that records more inputs than it can name before running (evaluate's label files, inside
    its data folder, which is compared) passes False.
    """
    if not record:
        return "files without a deepicd manifest"
    if record.get("stage") != stage:
        return f"the output of deepicd {record.get('stage')}, not of {stage}"
    if not record.get("finished"):
        return f"an unfinished {stage} run"
    skipped = set(ignore)
    recorded, current = record.get("config") or {}, _plain(config)
    changed = [key for key in sorted(set(recorded) | set(current))
               if key not in skipped and recorded.get(key) != current.get(key)]
    before = record.get("inputs") or {}
    now = {role: manifest.describe_input(value) for role, value in inputs.items()}
    extra = [role for role in before if role not in inputs] if every_input else []
    for role in [*inputs, *extra]:
        if _identity(now.get(role)) != _identity(before.get(role)):
            changed.append(f"input {role}")
    return f"a {stage} run with other settings ({', '.join(changed)})" if changed else None


def _identity(described: dict | None) -> dict | None:
    """An input's description less its path: the same file elsewhere is the same input."""
    return None if described is None else {k: v for k, v in described.items() if k != "path"}


def previous_run(out: str | Path, stage: str, config: Mapping, inputs: Mapping[str, str | Path | None], *,
                 overwrite: bool, ignore: Iterable[str] = ("overwrite",), every_input: bool = True) -> dict | None:
    """The manifest of OUT's finished `stage` run with these settings and inputs: the stage need not run.

    None when OUT is new or empty, or when `overwrite` is set and the stage is to run anew.
    A UserError, naming what differs, when OUT holds anything else and `overwrite` is not set.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if overwrite or not out.is_dir() or not any(not p.name.startswith(".") for p in out.iterdir()):
        return None  # new, empty, or to be replaced: nothing to compare (comparing hashes every input)
    record = manifest.read(out / manifest.FILE)
    reason = mismatch(record, stage, config, inputs, ignore, every_input)
    if reason is None:
        return record
    raise UserError(f"{out} already holds {reason}; {OVERWRITE_HINT}")


def already_done(out: str | Path) -> str:
    """What a stage prints when OUT already holds its run."""
    return f"{out} already holds this run, with these settings and inputs: nothing to do (--overwrite runs it again)"


def clear(out: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the named entries of OUT (a resumable stage's run, before `--overwrite` starts it over)."""
    removed = []
    for name in names:
        path = Path(out) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def start_resumable(out: str | Path, names: Iterable[str], *, overwrite: bool) -> None:
    """Ready OUT for a resumable stage: with `overwrite` the named entries of its run go (`clear`).

    Either way the temporaries that killed runs left beside those entries go
    (`deepicd.manifest.clear_stale`): a save killed halfway can hold a model's
    worth of disk, which the next run should not have to train beside.
    """
    names = list(names)
    if overwrite:
        clear(out, names)
    for name in names:
        manifest.clear_stale(Path(out) / name)
