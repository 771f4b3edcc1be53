"""The kinds of input a method declares in its `Inputs` (a NamedTuple whose fields are
annotated with these), so that the command, the experiments and a test can see what each
method takes without running it.

  Image    float32[H, W, 3] in [0, 1] (--content; a start image a library caller gives)
  Images   one or more Image (--style)
  Mask     float32[H, W, C] in [0, 1], white inside (--mask, --dilated_mask)
  Labels   semantic regions of content and styles, jstyle.ops.masks.Labels (--content_mask,
           --style_mask)
  Clip     a clip's frames, frame rate and flow source, jstyle.image.clips.Clip (--content
           with a video file, a folder of frames or a printf pattern)
  Model    a trained network, loaded (--model)
A field that may be None (`Labels | None = None`) is optional.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

import numpy as np

Image = Annotated[np.ndarray, "image"]
Images = Annotated[list, "images"]
Mask = Annotated[np.ndarray, "mask"]
Labels = Annotated[Any, "labels"]
Clip = Annotated[Any, "clip"]
Model = Annotated[Any, "model"]
KINDS = ("image", "images", "mask", "labels", "clip", "model")


def _kind(hint) -> str | None:
    """The kind an annotation names (inside `X | None` too), or None."""
    if typing.get_origin(hint) is Annotated:
        meta = [m for m in hint.__metadata__ if m in KINDS]
        return meta[0] if meta else None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [k for k in map(_kind, typing.get_args(hint)) if k]
        return found[0] if found else None
    return None


def declared(inputs: type) -> dict[str, tuple[str | None, bool]]:
    """{field: (kind or None when undeclared, required)} of a method's Inputs NamedTuple."""
    hints = typing.get_type_hints(inputs, include_extras=True)
    defaults = getattr(inputs, "_field_defaults", {})
    return {name: (_kind(hints.get(name)), name not in defaults)
            for name in getattr(inputs, "_fields", ())}
