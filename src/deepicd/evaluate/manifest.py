"""What produced an evaluation: config, inputs with checksums, package versions, model.

A row of Table 3 is only as trustworthy as the record of where it came from;
`deepicd report` also reads the `method` written here to group runs into
Baselines / GRPO / SFT / SFT+GRPO. The record itself is the project-wide one
(`deepicd.manifest.record`), with the same keys as every other stage's.
"""

from __future__ import annotations

from pathlib import Path

from deepicd import manifest as shared

PACKAGES = ("deepicd", "numpy", "pandas", "scikit-learn", "matplotlib", "simple-icd-10-cm", "torch", "transformers", "vllm", "openai")


TARGETS = ("reasoning+outcome", "outcome-only")


def _recorded_method(path: Path) -> str:
    return str(shared.read(path).get("method") or "")


def model_stage(model: str | Path | None) -> str:
    """The `method` recorded by the stage that produced a model folder (`sft`, `grpo`, `sft-grpo`), or "".

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
        return _recorded_method(inside)
    beside = folder.parent / "manifest.json"
    if beside.is_file():
        method = _recorded_method(beside)
        return method if group_of(method) != "Other" else ""
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
            prompts = shared.read(path).get("prompts")
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


def build(config: dict, inputs: dict[str, Path | str | None], *, method: str, seed: int | None, prompts: dict,
          result: dict) -> dict:
    """The evaluation's manifest: the shared record, stage `evaluate`, `method` the evaluated model's."""
    return shared.record("evaluate", method=method or None, config=config, inputs=inputs, seed=seed,
                         prompts=prompts, result=result, packages=PACKAGES)
