"""Typed configuration: Hydra composes YAML presets and `key=value` overrides into dataclasses.

Every stage owns a dataclass schema, the single source of defaults, each key
commented where it is declared. A preset is `configs/<group>/<name>.yaml` inside
the package (or any YAML file the user points at) and holds only what differs:
from the schema, or from the base (`_<name>.yaml`) or preset it composes through
a Hydra `defaults:` list. Composition happens once,
at the edge (the CLI); the result is a plain dataclass, validated against the
schema, so stage code never sees OmegaConf objects or environment variables.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepicd.errors import ConfigError

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"

T = TypeVar("T")


# Which dataclass validates each config group; a test loads every shipped preset through this.
SCHEMAS: dict[str, str] = {
    "rewards": "deepicd.rewards.config:RewardConfig",
    "tiny": "deepicd.tiny:TinyModelConfig",
    "preprocess": "deepicd.preprocess:PreprocessConfig",
    "grpo": "deepicd.train.grpo_config:GRPORunConfig",
    "distill": "deepicd.distill.run:DistillConfig",
    "sft": "deepicd.train.sft:SFTRunConfig",
    "evaluate": "deepicd.evaluate.config:EvaluateConfig",
    "demo": "deepicd.demo:DemoConfig",
}
# Folders under configs/ that hold other tools' files rather than deepicd presets.
FOREIGN_GROUPS = {"accelerate"}


def schema_for(group: str) -> type:
    """The schema class registered for a config group."""
    import importlib

    if group not in SCHEMAS:
        raise ConfigError(f"no schema registered for config group {group!r}")
    module, _, name = SCHEMAS[group].partition(":")
    return getattr(importlib.import_module(module), name)


def available_presets(group: str) -> list[str]:
    """Names of the presets shipped for a group, e.g. `available_presets("rewards")`.

    A file whose name starts with `_` is a base that presets of the group compose (Hydra `defaults:`),
    not a preset of its own.
    """
    folder = CONFIG_ROOT / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")) if folder.is_dir() else []


def _compose(config_dir: Path, config_name: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name=config_name)
    except HydraException as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("defaults", None)
    return data


def parse_overrides(overrides: Sequence[str]) -> dict:
    """`key=value` strings (dotted keys, YAML values; a leading `+` is accepted) as a nested dict.

    Overrides are applied on top of the schema, not the YAML file, so any key the
    schema knows can be set even when the preset does not mention it.
    """
    items = []
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.strip("+ "):
            raise ConfigError(f"override {override!r} is not of the form key=value")
        items.append(override.lstrip("+"))
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(items))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {str(exc).splitlines()[0]}") from exc


def compose_dict(group: str, name_or_path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Compose a preset (by name) or a YAML file (by path), then apply overrides, into a plain dict."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = _compose(path.resolve().parent, path.stem)
    elif str(name_or_path) not in available_presets(group):
        known = ", ".join(available_presets(group)) or "none"
        raise ConfigError(f"unknown {group} preset {str(name_or_path)!r}; known presets: {known}")
    else:
        data = _compose(CONFIG_ROOT / group, str(name_or_path))
    if overrides:
        data = OmegaConf.to_container(OmegaConf.merge(data, parse_overrides(overrides)))
    return data


def to_schema(schema: type[T], data: dict, *, source: str = "config") -> T:
    """Validate a dict against a dataclass schema: unknown keys and wrong types are errors naming the key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f" at key '{key}'" if key else ""
        message = str(exc).splitlines()[0]
        raise ConfigError(f"invalid {source}{where}: {message}") from exc


def load(schema: type[T], group: str, name_or_path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Compose `group/name_or_path` with overrides and validate it into `schema`."""
    data = compose_dict(group, name_or_path, overrides)
    return to_schema(schema, data, source=f"{group} config {str(name_or_path)!r}")


def with_fields(config: T, changes: dict[str, Any]) -> T:
    """`config` with dotted keys set (None values skipped): how a command applies its flags.

    Each changed block is rebuilt with `dataclasses.replace`, so it checks
    itself again (`__post_init__`): a flag gets the same scrutiny as a preset.
    """
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        if value is None:
            continue
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, inner in nested.items():
        direct[head] = with_fields(getattr(config, head), inner)
    return dataclasses.replace(config, **direct) if direct else config


def to_dict(config: Any) -> dict:
    """A dataclass config as a plain dict, for manifests."""
    return dataclasses.asdict(config)
