"""The `train-grpo` stage: one entry point, `run(config)`, for both engines.

TRL trains in this process (`grpo_trl.train`). A VERL run is prepared first
(`prepare`: the per-GPU memory fit, the engine's exact command and the
preflight checks) and then launched (`grpo_verl.train`, which exports the
model and records the run). The command prints what `prepare` found; its
`--dry-run` and `--preflight` stop there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from deepicd.errors import UserError
from deepicd.schema import require_given
from deepicd.train.grpo_config import GRPORunConfig


@dataclass
class VerlLaunch:
    """Everything decided before VERL starts."""

    config: GRPORunConfig  # as it will run: with verl.auto_fit's changes
    fit_changes: list[str]  # what auto_fit changed, one line each
    memory: str  # the per-GPU memory plan, or why there is none
    argv: list[str] = field(default_factory=list)  # the engine's command
    checks: list = field(default_factory=list)  # grpo_verl.Check of the preflight; empty when skipped

    @property
    def failed(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]


def require_paths(config: GRPORunConfig) -> None:
    """The data, output folder and model a run needs; a preset may hold the model, never the folders."""
    require_given(config, "grpo config", {"data": "--data", "out": "--out", "model": "--model"})


def fit(config: GRPORunConfig) -> VerlLaunch:
    """The per-GPU memory plan; with verl.auto_fit, the settings that fit (see deepicd.train.grpo_memory)."""
    from deepicd.train import grpo_memory

    fitted = grpo_memory.fit(config)
    memory = fitted.plan.summary() if fitted.plan is not None else f"not planned: {fitted.note}"
    return VerlLaunch(fitted.config, list(fitted.changes), memory)


def prepare(config: GRPORunConfig, *, preflight: bool = True) -> VerlLaunch:
    """Fit, compose the engine's command and (unless told not to) run the preflight checks."""
    from deepicd.train import grpo_verl

    launch = fit(config)
    launch.argv = grpo_verl.command(launch.config)
    if preflight:
        launch.checks = grpo_verl.preflight(launch.config, launch.argv)
    return launch


def run(config: GRPORunConfig, *, preflight: bool = True, export_model: bool = True,
        on_prepared: Callable[[VerlLaunch], None] | None = None):
    """Train; returns `grpo_trl.TrlRunResult` or `grpo_verl.VerlRunResult` (the engine's exit code).

    VERL: `on_prepared` sees the prepared launch (to print it) before anything
    is started; a failed preflight check stops the run there.
    """
    from deepicd.train import grpo_trl, grpo_verl

    require_paths(config)
    if config.backend == "trl":
        return grpo_trl.train(config)
    launch = prepare(config, preflight=preflight)
    if on_prepared is not None:
        on_prepared(launch)
    if launch.failed:
        raise UserError(f"preflight failed ({', '.join(launch.failed)}); nothing was started")
    if launch.config.verl.prefill == "closed-turn":
        grpo_verl.write_closed_turn_prompts(launch.config)
    return grpo_verl.train(launch.config, launch.argv, export_model=export_model)
