"""Hyperparameter and option dataclasses: documented fields that become command flags.

A method's `Params` (and the shared `jstyle.engine.options.RunOptions`) are frozen dataclasses
whose fields are made with `field(default, help, ...)`: the help text and the flag's kind live
on the field, so the `jstyle` command defines every flag from the dataclasses and a new method
adds no line to it. `pytree` registers such a class as a JAX pytree: fields marked `static`
(layer names, patch sizes, choices) are part of the structure, the others (weights) are leaves
that a sweep can vmap over.

Flag kinds: "list" (comma-separated names -> tuple of str), "floats" (comma-separated numbers
-> tuple of float), "ints" (-> tuple of int), "float", "integer", "bool", "enum" (one of
`choices`), "string". Without `kind`, it follows the default's type.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

KINDS = ("list", "floats", "ints", "float", "integer", "bool", "enum", "string")


def field(default: Any, help: str, *, kind: str | None = None,
          choices: tuple[str, ...] | None = None, static: bool = False, flag: bool = True):
    """A dataclass field with its flag's help text and kind (`flag=False`: no flag)."""
    if kind is None:
        kind = ("enum" if choices else
                "bool" if isinstance(default, bool) else
                "integer" if isinstance(default, int) else
                "float" if isinstance(default, float) else
                "list" if isinstance(default, tuple) and default and isinstance(default[0], str)
                else "floats" if isinstance(default, tuple) else "string")
    assert kind in KINDS, kind
    return dataclasses.field(default=default, metadata={
        "help": help, "kind": kind, "choices": choices, "static": static, "flag": flag})


def pytree(cls):
    """Registers the dataclass `cls` as a pytree: `static` fields are metadata (part of the
    tree's structure, hashable), the others leaves."""
    fields = dataclasses.fields(cls)
    jax.tree_util.register_dataclass(
        cls, data_fields=[f.name for f in fields if not f.metadata.get("static")],
        meta_fields=[f.name for f in fields if f.metadata.get("static")])
    return cls


def flag_fields(cls) -> list[dataclasses.Field]:
    """The fields of `cls` that are command flags."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", False)]
