"""jstyle's one checkpoint format, for every method and the trainer: a plain .npz holding a
state pytree's leaves (`leaf0`, `leaf1`, ...), named arrays (`array_<name>`) and a JSON record
(`record`: what made the run, where it stood, its history), written atomically.

  save(path, state, record, arrays)    write (any pytree: LoopState, TrainState, or None)
  read(path) -> Saved                  the record and the named arrays, checked readable
  restore(path, like)                  the state, shaped and typed as `like`, or None if it
                                       does not fit
  check_made(path, saved, made, may_change)   one compatibility check: InputError naming
                                       what differs
"""

from __future__ import annotations

import json
import pathlib
import zipfile
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.errors import InputError
from jstyle.system.files import write_atomic


class Saved(NamedTuple):
    """What a checkpoint holds besides its state."""
    record: dict  # {"made": what made the run, "position": where it stood, ...}
    arrays: dict[str, np.ndarray]  # the named arrays saved with it


def save(path: pathlib.Path, state: Any, record: dict,
         arrays: dict[str, np.ndarray] | None = None) -> None:
    """Writes `state`'s leaves, the named `arrays` and `record` (JSON) to `path` atomically."""
    blobs = {f"leaf{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    blobs.update({f"array_{name}": np.asarray(a) for name, a in (arrays or {}).items()})
    blobs["record"] = np.frombuffer(json.dumps(record, sort_keys=True, default=str).encode(),
                                    np.uint8)
    write_atomic(pathlib.Path(path), lambda f: np.savez(f, **blobs))


def _load(path: pathlib.Path, wanted=lambda name: True) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files if wanted(name)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        raise InputError(f"{path} is not a readable checkpoint (corrupt or truncated); it was "
                         "kept: move it away to start over") from None


def read(path: pathlib.Path) -> Saved:
    """The record and named arrays of the checkpoint at `path`.

    Raises:
      InputError: the file cannot be read as a jstyle checkpoint (corrupt, truncated, another
        program's); it is left as it is.
    """
    blobs = _load(path, lambda name: name == "record" or name.startswith("array_"))
    try:
        record = json.loads(bytes(blobs["record"]).decode())
    except (KeyError, ValueError):
        raise InputError(f"{path} is not a jstyle checkpoint (it has no record); it was kept: "
                         "move it away to start over") from None
    return Saved(record, {n[len("array_"):]: a for n, a in blobs.items()
                          if n.startswith("array_")})


def restore(path: pathlib.Path, like: Any) -> Any | None:
    """The state saved at `path`, with the structure, shapes and dtypes of `like`; None when
    its leaves do not fit.

    Raises:
      InputError: an unreadable file.
    """
    blobs = _load(path, lambda name: name.startswith("leaf"))
    leaves, treedef = jax.tree.flatten(like)
    names = [f"leaf{i}" for i in range(len(leaves))]
    if len(blobs) != len(leaves) or any(
            n not in blobs or np.shape(blobs[n]) != np.shape(b) for n, b in zip(names, leaves)):
        return None
    return jax.tree.unflatten(treedef, [jnp.asarray(blobs[n], dtype=jnp.asarray(b).dtype)
                                        for n, b in zip(names, leaves)])


def as_json(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj, default=str))


def _without(obj: Any, names: tuple[str, ...]) -> Any:
    """`obj` without the dict keys in `names`, at any depth."""
    if isinstance(obj, dict):
        return {k: _without(v, names) for k, v in obj.items() if k not in names}
    if isinstance(obj, list):
        return [_without(v, names) for v in obj]
    return obj


def differences(made: dict, theirs: dict, may_change: tuple[str, ...] = ()) -> list[str]:
    """The keys in which two records of what made a run differ ("options.size",
    "hyperparameters.style_weight", "inputs"), but for the settings named in `may_change`
    (in the options and in each level's entry: a level's steps)."""
    strip = lambda record: {k: _without(v, may_change) if k in ("options", "levels") else v
                            for k, v in as_json(record).items()}
    mine, theirs = strip(made), strip(theirs)
    found = set()
    for key in set(mine) | set(theirs):
        a, b = mine.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found |= {f"{key}.{n}" for n in set(a) | set(b) if a.get(n) != b.get(n)}
        elif a != b:
            found.add(key)
    return sorted(found)


def check_made(path: pathlib.Path, saved: Saved, made: dict,
               may_change: tuple[str, ...] = ()) -> None:
    """InputError unless the checkpoint at `path` (`saved`) was made as `made` says, but for
    the options in `may_change`; the file is kept."""
    if "made" not in saved.record:
        raise InputError(f"{path} is a checkpoint of an older jstyle, which this one cannot "
                         "continue; it was kept: move it away to start over")
    differ = differences(made, saved.record["made"], may_change)
    if differ:
        raise InputError(f"{path} was made by another run (it differs in {', '.join(differ)});"
                         " it was kept: rerun with the flags that made it, or move it away to "
                         "start over")
