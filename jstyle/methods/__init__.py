"""jstyle's style-transfer methods, one module each, found by name through `REGISTRY`.

A method module defines its hyperparameters (a dataclass with documented defaults and named
presets) and a `run(...)`, and registers itself here with `register`, so the command and the
experiments find it without edits elsewhere.
"""

from __future__ import annotations

from typing import Any

REGISTRY: dict[str, Any] = {}


def register(name: str):
    """Class/module decorator: `REGISTRY[name] = obj`."""
    def add(obj):
        REGISTRY[name] = obj
        return obj
    return add


def get(name: str):
    """The registered method called `name`, or InputError listing the known ones."""
    from jstyle.errors import InputError
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


from jstyle.methods import gatys, mrf  # noqa: E402,F401  (they register themselves)
