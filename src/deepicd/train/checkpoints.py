"""The checkpoints a Hugging Face trainer leaves in OUT/checkpoints, read one way by SFT and by GRPO (TRL).

A run resumes from its last complete checkpoint. Two things the trainer gets
wrong on a resume are decided here instead:

* a checkpoint that already holds the run's last step means the run is over;
  handing it to `trainer.train` would train one step more (and change the
  model) on every rerun, so the stage does not train at all;
* the trainer's `training_loss` divides the loss of this process's steps by
  all the steps of the run, so after a resume it is far too low; the mean of
  the logged losses, each weighted by the steps it covers, is the whole run's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from deepicd.errors import UserError

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE = "trainer_state.json"  # written last into a checkpoint folder: its presence marks it complete


def last_complete(folder: str | Path) -> Path | None:
    """The newest `checkpoint-N` folder that was written completely (it holds trainer_state.json)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and path.is_dir() and (path / STATE).is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def trainer_state(checkpoint: Path) -> dict:
    """The trainer's state saved with a checkpoint; UserError naming the file when it cannot be read."""
    path = Path(checkpoint) / STATE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the checkpoint state {path}: {exc}; delete that checkpoint to resume "
                        "from the one before it") from None


def is_final(checkpoint: Path, max_steps: int) -> bool:
    """True when `checkpoint` holds the last step of a run planned for `max_steps` (<= 0: as it was planned)."""
    state = trainer_state(checkpoint)
    planned = max_steps if max_steps > 0 else int(state.get("max_steps") or 0)
    return planned > 0 and int(state.get("global_step") or 0) >= planned


# Config keys that say where a run is or what to do with an earlier one, not what the run is.
NOT_RUN_SETTINGS = ("out", "overwrite")


def finished_record(out: Path, final: Path, stage: str, config: dict) -> dict:
    """The manifest of OUT's finished run, when it may stand for this one; UserError saying why not.

    `final` holds the run's last step. The model and manifest must be there
    (a run that died while saving has neither), and the recorded config must be
    `config` (deepicd.run_folder.mismatch): a finished run with other settings
    is not this run.
    """
    from deepicd import manifest, run_folder

    model_dir, path = out / "model", out / manifest.FILE
    if not model_dir.is_dir() or not path.is_file():
        raise UserError(f"{final} holds the run's last step, but {model_dir} or {path} is missing (the run stopped "
                        f"while saving its model); delete {final} to train that step again")
    record = manifest.read(path)
    reason = run_folder.mismatch(record, stage, config, {}, ignore=NOT_RUN_SETTINGS, every_input=False)
    if reason is not None:
        raise UserError(f"{out} holds {reason}; pass --overwrite to train anew there, or give another --out")
    return record


def mean_loss(log_history: Iterable[dict]) -> float | None:
    """The run's mean training loss from the trainer's log: each logged loss weighted by the steps it covers."""
    total = covered = 0.0
    previous = 0
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue
        steps = int(entry["step"]) - previous
        if steps > 0:
            total += float(entry["loss"]) * steps
            covered += steps
            previous = int(entry["step"])
    return total / covered if covered else None
