"""What produced an evaluation: config, inputs with checksums, package versions, model.

A row of Table 3 is only as trustworthy as the record of where it came from;
`deepicd report` also reads the `stage` written here to group runs into
Baselines / GRPO / SFT / SFT+GRPO. Versions, checksums and atomic writes come
from the project-wide `deepicd.manifest`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deepicd import manifest as shared

PACKAGES = ("deepicd", "numpy", "pandas", "scikit-learn", "matplotlib", "simple-icd-10-cm", "torch", "transformers", "vllm", "openai")


def describe_input(path: Path | str | None) -> dict | None:
    """Path, size and sha256 of a file; path and kind of a folder or model id."""
    if path is None or path == "":
        return None
    p = Path(path)
    if p.is_file():
        return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": shared.sha256_file(p)}
    if p.is_dir():
        return {"path": str(p.resolve()), "kind": "folder"}
    return {"path": str(path), "kind": "name"}


TARGETS = ("reasoning+outcome", "outcome-only")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_stage(path: Path) -> str:
    data = _read(path)
    return str(data.get("method") or data.get("stage") or "")


def model_stage(model: str | Path | None) -> str:
    """The `method` or `stage` recorded by the stage that produced a model folder, or "".

    Training stages write their manifest either inside the model folder or beside
    it (OUT/manifest.json for OUT/model); the latter is trusted only when it names
    a training method, so an unrelated manifest one level up is never picked up.
    """
    from deepicd.evaluate.table import group_of

    if not model or not Path(model).is_dir():
        return ""
    folder = Path(model)
    inside = folder / "manifest.json"
    if inside.is_file():
        return _recorded_stage(inside)
    beside = folder.parent / "manifest.json"
    if beside.is_file():
        stage = _recorded_stage(beside)
        return stage if group_of(stage) != "Other" else ""
    return ""


def model_target(model: str | Path | None) -> str:
    """What the model was fine-tuned to write, from the manifest in or beside its folder, or "".

    `deepicd sft` copies the `prompts` record of its data folder into its manifest:
    `deepicd sft-data` (outcome-only SFT) writes `target: outcome-only` there, and
    `deepicd distill` names its oracle prompt (reasoning traces: reasoning+outcome).
    """
    if not model or not Path(model).is_dir():
        return ""
    folder = Path(model)
    for path in (folder / "manifest.json", folder.parent / "manifest.json"):
        if path.is_file():
            prompts = _read(path).get("prompts")
            if isinstance(prompts, dict):
                if prompts.get("target") in TARGETS:
                    return str(prompts["target"])
                if "oracle" in prompts:
                    return "reasoning+outcome"
            return ""
    return ""


def target_of(config, model: str | Path | None) -> str:
    """Table 4's row kind of an evaluation: the model's training target, else what the prompt asks for."""
    return model_target(model) or ("outcome-only" if config.prompt == "code-only" else "reasoning+outcome")


def build(config: dict, inputs: dict[str, Path | str | None], *, model: str | None, stage: str, extra: dict | None = None) -> dict:
    manifest = {
        "command": "evaluate",
        "created": shared.now(),
        "argv": sys.argv[1:],
        "config": config,
        "inputs": {name: described for name, value in inputs.items() if (described := describe_input(value))},
        "model": model,
        "versions": shared.versions(PACKAGES),
    }
    if stage:
        manifest["stage"] = stage
    if extra:
        manifest.update(extra)
    return manifest
