"""The closed sets of values that configs and commands take, and their check.

Every option with a fixed set of values is typed with one of these `Literal`s, so tyro
lists the values in `--help` and rejects any other; `check_choices` gives the same
guarantee to a config built in Python or read from a run's JSON (a typo such as
`kernel_backend="taich"` is an error, never a silent fallback).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from loopnerf.errors import ConfigError

Preset = Literal["tiny", "cpu", "paper"]
"""'tiny': seconds, for tests; 'cpu': the default, minutes on a 2-core CPU; 'paper': the report's sizes, for a GPU."""
PRESETS: tuple[str, ...] = typing.get_args(Preset)
Decoder = Literal["linear", "mlp"]
"""'linear' (explicit colour basis, fast, bakeable) or 'mlp' (hybrid)."""
Contraction = Literal["auto", "none", "mipnerf360"]
"""'none' (bounded scene: rays sampled inside the box), 'mipnerf360' (unbounded), or
'auto' (stage 1 picks one of them from the capture: `loopnerf.model.contraction_choice`)."""
DynamicRegionMode = Literal["auto", "everywhere"]
"""'auto' (time planes act only where the capture's still views see motion) or 'everywhere'."""
KernelBackend = Literal["taichi", "torch"]
"""'taichi' (the fast kernels) or 'torch' (their plain-PyTorch reference twins)."""


def check_choice(value, choices, name: str) -> None:
    """ConfigError unless `value` is one of `choices` (a Literal type or a tuple)."""
    allowed = typing.get_args(choices) if typing.get_origin(choices) is Literal else tuple(choices)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_choices(obj, prefix: str = "") -> None:
    """Check every `Literal`-typed field of dataclass `obj` (and of the dataclasses in it)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints.get(f.name)
        name = f"{prefix}{f.name}"
        if typing.get_origin(hint) is typing.Union:  # Optional[Literal[...]]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else hint
            if value is None:
                continue
        if typing.get_origin(hint) is Literal:
            check_choice(value, hint, name)
        elif dataclasses.is_dataclass(value):
            check_choices(value, name + ".")
        elif isinstance(value, tuple):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    check_choices(v, f"{name}.{i}.")


def changed_fields(old, new, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two configs of one dataclass type."""
    out = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out += changed_fields(a, b, f"{prefix}{f.name}.")
        elif a != b:
            out.append(f"{prefix}{f.name} ({a!r} -> {b!r})")
    return out
