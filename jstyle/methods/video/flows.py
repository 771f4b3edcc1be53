"""Ruder et al.'s video method: the optical flow between a clip's frames (OpenCV's DIS in
process, or the authors' precomputed files), its reliability, and results warped along it."""

from __future__ import annotations

import pathlib
import re
import time
from typing import NamedTuple

import numpy as np

from jstyle import image as image_lib
from jstyle.engine.images import finish_colors
from jstyle.engine.options import RunOptions
from jstyle.errors import InputError
from jstyle.image import clips
from jstyle.methods.video.settings import MEAN_PIXEL, VideoParams
from jstyle.ops import flow
from jstyle.system import memory

PATTERN_FLAGS = {"backward": "flow_pattern", "backward_weights": "flow_weight_pattern",
                 "forward": "forward_flow_pattern",
                 "forward_weights": "forward_flow_weight_pattern"}  # the command's flags


def check_flows(files: clips.Flows | None, hp: VideoParams) -> None:
    """InputError unless precomputed flows name both placeholders, come with their
    reliability, and (for --passes > 1) go both ways."""
    if files is None:
        return
    for name, flag in PATTERN_FLAGS.items():
        pattern = getattr(files, name)
        if pattern and not (re.search(r"\[[^\]]*%[^\]]*\]", pattern)
                            and re.search(r"\{[^}]*%[^}]*\}", pattern)):
            raise InputError(f"--{flag}={pattern} needs both placeholders, [%d] for the frame "
                             "made and {%d} for the frame its flow points to; give e.g. "
                             "backward_[%d]_{%d}.flo")
    for flows, weights in (("backward", "backward_weights"), ("forward", "forward_weights")):
        if bool(getattr(files, flows)) != bool(getattr(files, weights)):
            given, missing = (flows, weights) if getattr(files, flows) else (weights, flows)
            raise InputError(f"--{PATTERN_FLAGS[given]} was given without "
                             f"--{PATTERN_FLAGS[missing]}; give both (the flows and their "
                             "reliability), or neither to compute them with DIS")
    if hp.passes > 1 and files.backward and not files.forward:
        raise InputError("--passes > 1 with precomputed flows also needs the forward ones; "
                         "give --forward_flow_pattern and --forward_flow_weight_pattern")


def fill_pattern(pattern: str, made: int, other: int) -> str:
    """The authors' file naming (getFormatedFlowFileName): `[fmt]` formatted with the number
    of the frame being made, `{fmt}` with the frame its flow points to."""
    text = re.sub(r"\{([^}]*)\}", lambda m: m.group(1) % other, pattern)
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1) % made, text)


class Pair(NamedTuple):
    """How to bring a result of frame b onto frame a."""
    flow: np.ndarray  # float32[H, W, 2], frame a -> frame b
    weights: np.ndarray  # float32[H, W] in [0, 1], its reliability


class FlowSource:
    """`pair(a, b)`: the flow from working frame a to frame b (indices into `frames`,
    float[H, W, 3] in [0, 1]) and its reliability, by DIS in both directions and the
    consistency check, or read from the clip's flow files (a > b: the backward pattern; a < b:
    the forward one); each pair is made once. `seconds` is the time spent on it so far
    (the warping and reliability programs are compiled beforehand, not counted).

    Raises (when called):
      InputError: a flow or weight file missing, unreadable, or of another size than the
        frames.
    """

    def __init__(self, frames: list[np.ndarray], hp: VideoParams, first: int = 1,
                 files: clips.Flows | None = None):
        self.frames, self.hp, self.first, self.files = frames, hp, first, files
        self.cache: dict[tuple[int, int], Pair] = {}
        self.seconds = 0.0
        h, w = frames[0].shape[:2]
        still = np.zeros((h, w, 2), np.float32)
        flow.reliability(still, still).block_until_ready()  # compile once, outside the timing
        warp(np.zeros((h, w, 3), np.float32), still)

    def _read(self, pattern: str, a: int, b: int, what: str) -> np.ndarray:
        h, w = self.frames[0].shape[:2]
        path = pathlib.Path(fill_pattern(pattern, self.first + a, self.first + b))
        if not path.is_file():
            raise InputError(f"{what} file {path} is missing; compute the flows of every "
                             "frame pair (or leave out the patterns to use DIS)")
        values = flow.read_flo(path) if what == "flow" else image_lib.load(path)[..., 0]
        if values.shape[:2] != (h, w):
            raise InputError(f"{what} file {path} is {values.shape[1]}x{values.shape[0]} but the "
                             f"working frames are {w}x{h}; give --size={max(values.shape[:2])} "
                             "or flows computed at this size")
        return values.astype(np.float32)

    def __call__(self, a: int, b: int) -> Pair:
        if (a, b) not in self.cache:
            started = time.perf_counter()
            hp, files = self.hp, self.files
            flows, weights = (None, None) if files is None else (
                (files.backward, files.backward_weights) if a > b else
                (files.forward, files.forward_weights))
            if flows:
                found = Pair(self._read(flows, a, b, "flow"), self._read(weights, a, b, "weight"))
            else:
                there = flow.dis_flow(self.frames[a], self.frames[b], hp.flow_preset)
                back = flow.dis_flow(self.frames[b], self.frames[a], hp.flow_preset)
                found = Pair(there, np.asarray(flow.reliability(there, back)))
            self.cache[a, b] = found
            self.seconds += time.perf_counter() - started
        return self.cache[a, b]


def pairs_needed(count: int, hp: VideoParams) -> list[tuple[int, int]]:
    """The (a, b) frame pairs whose flow a -> b a clip of `count` frames uses."""
    if hp.passes > 1:
        return [p for t in range(1, count) for p in ((t, t - 1), (t - 1, t))]
    return sorted({(t, t - r) for t in range(1, count) for r in (*hp.flow_relative_indices, 1)
                   if t - r >= 0})


def clip_gib(count: int, height: int, width: int, hp: VideoParams) -> float:
    """What a clip of `count` H x W working frames keeps besides the network, GiB: per frame
    its frame and 8-bit levels, its content targets (about 3 images' worth at relu4_2) and two
    passes' results, and per frame pair its flow and reliability (`pairs_needed`)."""
    return (7 * count + len(pairs_needed(count, hp))) * memory.image_gib(height, width)


def combine(weights: list[np.ndarray], how: str) -> list[np.ndarray]:
    """Long-term weights, closest frame first: `flow.closest_first`, or "normalize" (each
    divided by their sum where it exceeds 1; artistic_video.lua's processFlowWeights)."""
    if how == "closest_first" or not weights:
        return flow.closest_first(weights)
    total = np.maximum(sum(weights), 1.0)
    return [w / total for w in weights]


def warp(levels: np.ndarray, field: np.ndarray) -> np.ndarray:
    """A result (float[H, W, 3], 8-bit levels) warped along `field`, the mean pixel where the
    flow leaves the frame."""
    return np.asarray(flow.warp(levels, field, fill=MEAN_PIXEL)[0])


def rounded(levels: np.ndarray, frame: np.ndarray, opts: RunOptions) -> np.ndarray:
    """An optimised frame (float[H, W, 3], 8-bit levels) as its PNG holds it, after colour
    control (--preserve_colors=original: the frame's chroma): float32 whole 8-bit levels.
    Later frames are tied to this, so a resumed run, which reads it back, goes on exactly."""
    out = finish_colors(np.clip(levels, 0.0, 255.0) / 255.0, frame, opts)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.float32)
