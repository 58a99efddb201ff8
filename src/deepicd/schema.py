"""Checks a config dataclass runs on itself, so that a config which exists is a valid one.

Every stage's settings are a dataclass. Loading a preset, applying overrides and
building one in code all end in its `__init__`, so a check placed in
`__post_init__` cannot be skipped, and a bad value is refused before the stage
touches a file. The choices of a key are a `StrEnum`; a typo names the key and
lists them. The value kept is the plain string users write (`prompt=code-only`):
an enum member hashes by its name, not its value, so a member whose name and
value differ would miss in every dict and set keyed by the string. What only the run can know (a model folder given on the
command line, a file that must exist) is checked by the stage's `run`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable
from deepicd.errors import ConfigError

def choice(kind: type[StrEnum], value: object, key: str, where: str) -> str:
    """`value`, checked to be one of `kind`'s values; ConfigError naming `key` and the choices otherwise."""
    return one_of([member.value for member in kind], value, key, where)


def one_of(allowed: Iterable[str], value: object, key: str, where: str) -> str:
    """`value`, checked to be in `allowed` (a registry's names, say); ConfigError naming `key` otherwise."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"invalid {where} at key '{key}': {value!r}; expected one of {', '.join(allowed)}")
    return str(value)


def require(condition: bool, where: str, key: str, rule: str, value: object) -> None:
    """ConfigError naming `key`, the rule it breaks and its value, unless `condition` holds."""
    if not condition:
        raise ConfigError(f"invalid {where} at key '{key}': {rule}, got {value!r}")


def require_given(config: object, where: str, flags: dict[str, str]) -> None:
    """Each key of `flags` is set: a path no preset holds, given on the command line with that flag.

    Checked when the stage runs rather than when the config is built, so a
    preset loads (and is tested) without them.
    """
    for key, flag in flags.items():
        value = getattr(config, key)
        require(value not in ("", None), where, key, f"is required ({flag})", value)
