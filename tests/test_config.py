"""Every shipped config composes and validates against its schema; bad keys are named."""

from __future__ import annotations

import pytest

from deepicd.config import CONFIG_ROOT, FOREIGN_GROUPS, SCHEMAS, available_presets, load, schema_for
from deepicd.errors import ConfigError

GROUPS = sorted(
    p.name for p in CONFIG_ROOT.iterdir() if p.is_dir() and any(p.glob("*.yaml")) and p.name not in FOREIGN_GROUPS
)
PRESETS = [(group, name) for group in GROUPS for name in available_presets(group)]


def test_every_config_group_has_a_schema():
    assert set(GROUPS) <= set(SCHEMAS), f"register a schema in deepicd.config.SCHEMAS for {set(GROUPS) - set(SCHEMAS)}"


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}/{n}" for g, n in PRESETS])
def test_every_shipped_preset_loads(group, name):
    """Loading builds the dataclass, whose `__post_init__` runs every check: a preset that loads is valid."""
    config = load(schema_for(group), group, name)
    assert config is not None


# One value per group that only the schema's own checks can refuse (its type is right).
BAD_VALUE = {
    "rewards": ("code_pattern=loose", "code_pattern"),
    "tiny": ("hidden_size=100", "hidden_size"),
    "preprocess": ("split.train=-1", "split ratios"),
    "grpo": ("grpo.num_generations=1", "grpo.num_generations"),
    "distill": ("val_fraction=1.5", "val_fraction"),
    "sft": ("precision=fp8", "precision"),
    "evaluate": ("selection=best", "selection"),
    "demo": ("min_format_rate=2", "min_format_rate"),
}


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}/{n}" for g, n in PRESETS])
def test_every_preset_runs_its_checks_when_loaded(group, name):
    override, named = BAD_VALUE[group]
    with pytest.raises(ConfigError, match=named):
        load(schema_for(group), group, name, [override])


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}/{n}" for g, n in PRESETS])
def test_every_preset_says_how_to_run_it(group, name):
    first_lines = (CONFIG_ROOT / group / f"{name}.yaml").read_text().splitlines()[:15]
    assert any(line.startswith("#") for line in first_lines), "a preset opens with a comment saying how to run it"


def test_unknown_key_is_named():
    from deepicd.rewards.config import RewardConfig

    with pytest.raises(ConfigError, match="outcome.bogus"):
        load(RewardConfig, "rewards", "paper", ["+outcome.bogus=1"])


def test_unknown_preset_lists_the_known_ones():
    from deepicd.rewards.config import RewardConfig

    with pytest.raises(ConfigError, match="known presets: .*paper"):
        load(RewardConfig, "rewards", "nonexistent")


def test_yaml_file_path_works(tmp_path):
    from deepicd.rewards.config import RewardConfig

    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ncomponents: [outcome]\noutcome:\n  match: 10.0\n")
    config = load(RewardConfig, "rewards", path, ["outcome.no_match=-2"])
    assert (config.name, config.components, config.outcome.match, config.outcome.no_match) == ("mine", ["outcome"], 10.0, -2.0)


def _schemas_with_nested() -> list[type]:
    """Every dataclass a config group's schema is made of, nested blocks and base classes included."""
    import dataclasses
    import typing

    found: list[type] = []

    def visit(cls: type) -> None:
        if cls in found:
            return
        found.append(cls)
        for base in cls.__bases__:  # a shared base (EndpointConfig) declares keys too
            if dataclasses.is_dataclass(base):
                visit(base)
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            for candidate in (hints[item.name], *typing.get_args(hints[item.name])):
                if dataclasses.is_dataclass(candidate):
                    visit(candidate)

    for group in SCHEMAS:
        visit(schema_for(group))
    return found


@pytest.mark.parametrize("schema", _schemas_with_nested(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_schema_key_says_what_it_does(schema):
    """The dataclass is where a key's default and meaning live: each field has a comment beside or above it."""
    import ast
    import inspect
    import textwrap

    lines = inspect.getsourcelines(schema)[0]
    body = ast.parse(textwrap.dedent("".join(lines))).body[0].body
    silent = []
    for node in body:
        if isinstance(node, ast.AnnAssign):
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in lines[node.end_lineno - 1] and not above.startswith("#"):
                silent.append(node.target.id)
    assert silent == [], f"add a comment to {schema.__name__}: {', '.join(silent)}"


def _flat(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


BASES = [(group, p.stem) for group in GROUPS for p in sorted((CONFIG_ROOT / group).glob("_*.yaml"))]


@pytest.mark.parametrize(("group", "name"), PRESETS + BASES, ids=[f"{g}/{n}" for g, n in PRESETS + BASES])
def test_a_preset_holds_only_what_differs(group, name):
    """The schema is the single source of defaults: a preset (or base) sets a key only to change what the
    schema, or the base and presets it composes, would give."""
    import yaml
    from omegaconf import OmegaConf

    from deepicd.config import compose_dict

    own = yaml.safe_load((CONFIG_ROOT / group / f"{name}.yaml").read_text()) or {}
    inherited = OmegaConf.to_container(OmegaConf.structured(schema_for(group)))
    for entry in own.pop("defaults", []):
        if entry != "_self_":
            inherited = OmegaConf.to_container(
                OmegaConf.merge(inherited, compose_dict(group, CONFIG_ROOT / group / f"{entry}.yaml")))
    inherited = _flat(inherited)
    restated = [key for key, value in _flat(own).items() if key != "name" and inherited.get(key, object()) == value]
    assert restated == [], f"{group}/{name}.yaml restates inherited values: {', '.join(restated)}"


def test_bases_are_not_presets():
    assert BASES, "the grpo and sft groups compose their paper presets from a base"
    for group, name in BASES:
        assert name not in available_presets(group)
        with pytest.raises(ConfigError, match="unknown .* preset"):
            load(schema_for(group), group, name)


@pytest.mark.parametrize("group", sorted(SCHEMAS))
def test_every_preset_group_has_one_loader_beside_its_schema(group):
    """`load_<name>_config` in the schema's module, returning the schema: a newcomer finds it by the pattern."""
    import importlib
    import re

    schema = schema_for(group)
    module = importlib.import_module(schema.__module__)
    loaders = [name for name, value in vars(module).items()
               if re.fullmatch(r"load_\w+_config", name) and getattr(value, "__module__", None) == module.__name__]
    assert len(loaders) == 1, f"{module.__name__} should define one load_<name>_config, has {loaders}"
    assert isinstance(getattr(module, loaders[0])(available_presets(group)[0]), schema)
