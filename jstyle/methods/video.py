"""Ruder, Dosovitskiy & Brox (2016), "Artistic style transfer for videos".

  jstyle --method=video --content=clip.mp4 --style=painting.jpg --output=DIR

Every frame is stylised with the Gatys objective (`jstyle.objective`: every option of
--method=gatys but masks and the pyramid) plus a temporal term that ties it to earlier stylised
frames warped onto it along the optical flow, wherever that flow is reliable:

  L_t = alpha L_c + beta L_s + w_tv L_tv + w_hist L_hist
        + gamma sum_j mean_{x, c} c_j(x) (O_t(x) - warp(O_{t-j}, F_{t -> t-j})(x))^2

(`losses.temporal_loss`: artistic_video_core.lua's WeightedContentLoss with MSECriterion, the
mean over pixels and channels; jstyle works in 8-bit levels where the code's Caffe units are
256/255 times larger; gamma is --temporal_weight, 1e3 in artistic_video.lua).

Flow: OpenCV's DIS between the working frames, in process (`flow.dis_flow`, --flow_preset), or
the authors' precomputed files (--flow_pattern=backward_[%d]_{%d}.flo
--flow_weight_pattern=reliable_[%d]_{%d}.pgm: `[%d]` is the frame being made, `{%d}` the
frame its flow points to, frames numbered from --start_frame). Reliability c: the authors'
consistency check (`flow.reliability`). Long-term consistency (--flow_relative_indices=1,2,4)
ties frame t to t-1, t-2 and t-4, their weights combined closest first (`flow.closest_first`,
processFlowWeights).

Single pass (artistic_video.lua): the first frame starts from --init (noise: the code's
random init) and runs --first_frame_steps; every later frame starts from the previous result
warped onto it (prevWarped; what leaves the frame is filled with the mean pixel) and runs
--steps; each stops early when the loss changes by less than --tol over --tol_interval steps
(the code's tol_loss_relative 1e-4 over 50 iterations).

Multi-pass (artistic_video_multiPass.lua, --passes=N): pass 1 stylises every frame on its own;
later passes sweep backward and forward in turn, each frame starting from its last result
blended with its neighbours' results warped onto it (each weighted by its reliability times
--blend_weight for the neighbour the sweep comes from, --blend_weight_other for the other one,
divided by 1 plus the weights) and, from pass --temporal_after, tied to the neighbour the sweep
comes from. --pass_mode=parallel updates every frame of a pass at once from the previous
pass's results (both neighbours blended with --blend_weight and tied), one vmapped program
split over the devices (`runs.shard`): a Jacobi variant of the code's Gauss-Seidel sweeps, so
that a clip fills an accelerator instead of running frame by frame.

Every frame of a clip runs on one compiled program: the content targets, the warped frames and
their weights are the program's data (a frame without an earlier one has weight 0). A result
is rounded to 8 bits before later frames use it, as the code reads each result back from its
PNG, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib, objective, results
from jstyle.ops import flow
from jstyle.ops import losses
from jstyle.system import memory
from jstyle.engine import optimize
from jstyle.engine import runs
from jstyle.errors import InputError
from jstyle.objective import GatysParams
from jstyle.params import field, pytree
from jstyle.system.progress import Progress
from jstyle.engine.runs import RunOptions
from jstyle.nets.weights import VGGWeights

CONTENT = "clip"  # --content is a clip and --output a folder (jstyle.methods)
INPUTS = ("content", "style", "weights")
OPTIONS = tuple(f.name for f in dataclasses.fields(RunOptions) if f.name not in (
    "pyramid_levels", "pyramid_ratio", "pyramid_steps", "unmatched", "save_every"))
RESUMABLE = True
LATER_INITS = ("prev_warped", "prev", "init")
PASS_MODES = ("sequential", "parallel")
COMBINATIONS = ("closest_first", "normalize")
MEAN_PIXEL = np.asarray(runs.IMAGENET_MEAN_RGB, np.float32)  # the code's warpImage fill


@pytree
@dataclasses.dataclass(frozen=True)
class VideoParams(GatysParams):
    """The Gatys objective's hyperparameters, the temporal term's and the frame loop's."""
    temporal_weight: Any = field(1e3, "Temporal consistency weight gamma (0: frames on their "
                                 "own).")
    start_frame: int = field(1, "First frame of the clip to stylise (1: the first; a pattern's "
                             "numbers count from its first file).", static=True)
    num_frames: int = field(0, "Number of frames (0: to the end of the clip).", static=True)
    first_frame_steps: int = field(2000, "Optimiser steps of the first frame (--steps: the "
                                   "later frames').", static=True)
    later_init: str = field("prev_warped", "Start of the later frames (single pass): "
                            "prev_warped (the previous result warped along the flow), prev "
                            "(unwarped) or init (--init, as the first frame).",
                            choices=LATER_INITS, static=True)
    flow_relative_indices: tuple[int, ...] = field(
        (1,), "Earlier frames each frame is tied to, counted back (1,2,4: long-term "
        "consistency).", kind="ints", static=True)
    flow_weight_combination: str = field(
        "closest_first", "How the long-term weights combine: closest_first (each pixel tied to "
        "the closest earlier frame reliable there) or normalize (divided by their sum where it "
        "exceeds 1).", choices=COMBINATIONS, static=True)
    flow_preset: str = field("medium", "OpenCV DIS optical-flow preset.",
                             choices=flow.DIS_PRESETS, static=True)
    flow_pattern: str = field("", "Precomputed backward flows (Middlebury .flo), the authors' "
                              "pattern such as backward_[%d]_{%d}.flo ([%d] the frame made, "
                              "{%d} the earlier one; default: DIS in process).", static=True)
    flow_weight_pattern: str = field("", "Their reliability images (.pgm, white reliable), "
                                     "such as reliable_[%d]_{%d}.pgm.", static=True)
    forward_flow_pattern: str = field("", "Precomputed forward flows for --passes > 1, such as "
                                      "forward_[%d]_{%d}.flo.", static=True)
    forward_flow_weight_pattern: str = field("", "Their reliability images, such as "
                                             "reliable_[%d]_{%d}.pgm.", static=True)
    passes: int = field(1, "Passes over the clip (1: the single-pass algorithm; more: the "
                        "multi-pass one).", static=True)
    pass_mode: str = field("sequential", "Multi-pass: sequential (sweeps forward and backward, "
                           "frame by frame) or parallel (every frame of a pass at once, "
                           "vmapped over the devices).", choices=PASS_MODES, static=True)
    blend_weight: float = field(1.0, "Multi-pass: weight of the neighbour's warped result the "
                                "sweep comes from, in a frame's start.", static=True)
    blend_weight_other: float = field(0.0, "Multi-pass: weight of the other neighbour's.",
                                      static=True)
    temporal_after: int = field(8, "Multi-pass: the first pass with the temporal term.",
                                static=True)


Params = VideoParams

# artistic_video.lua: -content_weight 5e0, -style_weight 1e2, -tv_weight 1e-3, and
# neural-style's loss modules (MSECriterion, the Gram divided by C H W)
_CODE = dict(normalization="neural-style", content_weight=5.0, style_weight=100.0,
             tv_weight=1e-3)
PRESETS: dict[str, tuple[VideoParams, RunOptions]] = {
    # artistic_video.lua: -temporal_weight 1e3, -num_iterations 2000,1000, -tol_loss_relative
    # 1e-4 over -tol_loss_relative_interval 50, -init random,prevWarped (randn x 0.001 in Caffe
    # units: the mean pixel), lbfgs.lua's nCorrection 100, -print_iter 100; 450 px wide: the
    # resolution stylizeVideo.sh names.
    "code": (VideoParams(**_CODE, temporal_weight=1e3, first_frame_steps=2000),
             RunOptions(size=450, steps=1000, init="noise", init_noise=0.001,
                        learning_rate=10.0, lbfgs_memory=100, tol=1e-4, tol_interval=50,
                        print_every=100)),
    # artistic_video_multiPass.lua: -num_passes 15, -num_iterations 100 per pass,
    # -temporal_weight 5e2, -use_temporalLoss_after 8, -blendWeight 1, -blendWeight_lastPass 0,
    # -tol_loss_relative 0, -init random.
    "multipass": (VideoParams(**_CODE, temporal_weight=5e2, passes=15, temporal_after=8,
                              first_frame_steps=100),
                  RunOptions(size=450, steps=100, init="noise", init_noise=0.001,
                             learning_rate=10.0, lbfgs_memory=100, tol=0.0, print_every=50)),
    # "code" sized for a CPU: 256 px, 300 + 150 steps, stopping at a 1e-3 change over 25.
    "quick": (VideoParams(**_CODE, temporal_weight=1e3, first_frame_steps=300),
              RunOptions(size=256, steps=150, init="noise", init_noise=0.001,
                         learning_rate=10.0, lbfgs_memory=100, tol=1e-3, tol_interval=25,
                         print_every=50)),
}


def validate(hp: VideoParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    objective.validate(hp, opts, num_styles)
    runs.check_nonnegative({"temporal_weight": [hp.temporal_weight],
                            "blend_weight": [hp.blend_weight],
                            "blend_weight_other": [hp.blend_weight_other]})
    runs.check_at_least({"first_frame_steps": hp.first_frame_steps, "passes": hp.passes,
                         "temporal_after": hp.temporal_after, "start_frame": hp.start_frame},
                        1, "give a positive whole number")
    runs.check_at_least({"num_frames": hp.num_frames}, 0, "give a frame count, or 0 for all")
    if not hp.flow_relative_indices or min(hp.flow_relative_indices) < 1 or len(
            set(hp.flow_relative_indices)) != len(hp.flow_relative_indices):
        raise InputError(f"--flow_relative_indices={','.join(map(str, hp.flow_relative_indices))}"
                         " must be distinct whole numbers >= 1; give e.g. 1,2,4")
    if opts.tile > 1:
        raise InputError(f"--tile={opts.tile} does not apply to --method=video (its frames are "
                         "computed whole); leave --tile at 0 and lower --size")
    if opts.preserve_colors == "luminance":
        raise InputError("--preserve_colors=luminance does not apply to --method=video (its "
                         "temporal term ties colour frames); use original or match")
    if hp.passes > 1 and hp.flow_relative_indices != (1,):
        raise InputError("--flow_relative_indices is the single-pass algorithm's (long-term "
                         "consistency); leave it out with --passes > 1")
    for name in ("flow_pattern", "flow_weight_pattern", "forward_flow_pattern",
                 "forward_flow_weight_pattern"):
        pattern = getattr(hp, name)
        if pattern and not (re.search(r"\[[^\]]*%[^\]]*\]", pattern)
                            and re.search(r"\{[^}]*%[^}]*\}", pattern)):
            raise InputError(f"--{name}={pattern} needs both placeholders, [%d] for the frame "
                             "made and {%d} for the frame its flow points to; give e.g. "
                             "backward_[%d]_{%d}.flo")
    for flows, weights in (("flow_pattern", "flow_weight_pattern"),
                           ("forward_flow_pattern", "forward_flow_weight_pattern")):
        if bool(getattr(hp, flows)) != bool(getattr(hp, weights)):
            given, missing = (flows, weights) if getattr(hp, flows) else (weights, flows)
            raise InputError(f"--{given} was given without --{missing}; give both (the flows "
                             "and their reliability), or neither to compute them with DIS")
    if hp.passes > 1 and hp.flow_pattern and not hp.forward_flow_pattern:
        raise InputError("--passes > 1 with precomputed flows also needs the forward ones; "
                         "give --forward_flow_pattern and --forward_flow_weight_pattern")


# ---------------------------------------------------------------------------------------------
# The objective: Gatys's at this frame, plus the temporal term.

class Data(NamedTuple):
    """What the compiled objective takes for one frame (a parallel pass: a leading frame axis
    on `content`, `warped` and `weights`)."""
    frame: objective.Data  # the network, feature scales, style targets and hyperparameters,
    #   shared by every frame (its content targets are the first frame's: see `content`)
    content: dict[str, jax.Array]  # layer -> this frame's content features, float32[H_l, W_l, C_l]
    warped: jax.Array  # float32[J, H, W, 3], earlier results warped onto this frame, 8-bit levels
    weights: jax.Array  # float32[J, H, W] in [0, 1], their temporal weights (0: no term)

    @classmethod
    def sweep_axes(cls) -> "Data":
        """A batch of frames: their content, warped frames and weights; the rest shared."""
        return cls(None, 0, 0, 0)


def loss_terms(image: jax.Array, data: Data, convention, remat: bool = False
               ) -> dict[str, jax.Array]:
    """The Gatys terms at this frame's content, the temporal term and their sum at `image`
    (float32[H, W, 3], 8-bit levels): `{"content", "style", "tv", "hist", "temporal",
    "total"}`, each float32[]."""
    frame = data.frame._replace(targets=data.frame.targets._replace(content=data.content))
    terms = objective.loss_terms(image, frame, convention, remat)
    tied = jax.vmap(losses.temporal_loss, in_axes=(None, 0, 0))(image, data.warped,
                                                                 data.weights)
    terms["temporal"] = frame.hp.temporal_weight * jnp.sum(tied)
    terms["total"] = terms["total"] + terms["temporal"]
    return terms


# ---------------------------------------------------------------------------------------------
# Flows between frames.

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
    consistency check, or read from the patterns (a > b: --flow_pattern; a < b:
    --forward_flow_pattern); each pair is made once. `seconds` is the time spent on it so far
    (the warping and reliability programs are compiled beforehand, not counted).

    Raises (when called):
      InputError: a flow or weight file missing, unreadable, or of another size than the
        frames.
    """

    def __init__(self, frames: list[np.ndarray], hp: VideoParams):
        self.frames, self.hp = frames, hp
        self.cache: dict[tuple[int, int], Pair] = {}
        self.seconds = 0.0
        h, w = frames[0].shape[:2]
        still = np.zeros((h, w, 2), np.float32)
        flow.reliability(still, still).block_until_ready()  # compile once, outside the timing
        _warp(np.zeros((h, w, 3), np.float32), still)

    def _read(self, pattern: str, a: int, b: int, what: str) -> np.ndarray:
        h, w = self.frames[0].shape[:2]
        path = pathlib.Path(fill_pattern(pattern, self.hp.start_frame + a,
                                         self.hp.start_frame + b))
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
            hp = self.hp
            flows, weights = ((hp.flow_pattern, hp.flow_weight_pattern) if a > b else
                              (hp.forward_flow_pattern, hp.forward_flow_weight_pattern))
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


def _warp(levels: np.ndarray, field: np.ndarray) -> np.ndarray:
    """A result (float[H, W, 3], 8-bit levels) warped along `field`, the mean pixel where the
    flow leaves the frame."""
    return np.asarray(flow.warp(levels, field, fill=MEAN_PIXEL)[0])


def _result(levels: np.ndarray, frame: np.ndarray, opts: RunOptions) -> np.ndarray:
    """An optimised frame (float[H, W, 3], 8-bit levels) as its PNG holds it, after colour
    control (--preserve_colors=original: the frame's chroma): float32 whole 8-bit levels.
    Later frames are tied to this, so a resumed run, which reads it back, goes on exactly."""
    out = runs.finish_colors(np.clip(levels, 0.0, 255.0) / 255.0, frame, opts)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The frame loop.

class Job(NamedTuple):
    """One frame of one pass: where it starts and what ties it."""
    init: np.ndarray  # float32[H, W, 3], 8-bit levels
    warped: np.ndarray  # float32[J, H, W, 3], 8-bit levels
    weights: np.ndarray  # float32[J, H, W]
    tied_to: list[int]  # indices of the frames it is tied to


def _tied(outputs: dict[int, np.ndarray], sources: list[tuple[int, Pair]], slots: int,
          shape: tuple[int, ...], combination: str = "closest_first"
          ) -> tuple[np.ndarray, np.ndarray]:
    """(warped float32[slots, H, W, 3], weights float32[slots, H, W]) of `sources` ((frame,
    pair onto this frame), closest first), padded with zero weights."""
    warped = np.zeros((slots, *shape), np.float32)
    weights = np.zeros((slots, *shape[:2]), np.float32)
    found = combine([p.weights for _, p in sources], combination)
    for j, ((b, p), w) in enumerate(zip(sources, found)):
        warped[j], weights[j] = _warp(outputs[b], p.flow), w
    return warped, weights


def single_pass_job(t: int, outputs: dict[int, np.ndarray], pair: FlowSource,
                    hp: VideoParams, first: np.ndarray) -> Job:
    """Frame t of the single-pass algorithm, given the earlier results `outputs` (8-bit levels) and
    `first`, the start of the first frame."""
    slots = len(hp.flow_relative_indices)
    earlier = sorted({t - r for r in hp.flow_relative_indices if t - r >= 0}, reverse=True)
    if float(hp.temporal_weight) == 0:
        earlier = []
    sources = [(b, pair(t, b)) for b in earlier]
    warped, weights = _tied(outputs, sources, slots, first.shape, hp.flow_weight_combination)
    if t == 0 or hp.later_init == "init":
        init = first
    elif hp.later_init == "prev":
        init = outputs[t - 1]
    else:
        init = _warp(outputs[t - 1], pair(t, t - 1).flow)
    return Job(init, warped, weights, earlier)


def multi_pass_job(t: int, number: int, last: int, current: dict[int, np.ndarray],
                   previous: dict[int, np.ndarray], pair: FlowSource,
                   hp: VideoParams, first: np.ndarray, parallel: bool) -> Job:
    """Frame t in pass `number` (1-based) of the multi-pass algorithm; `current` holds this
    pass's results so far, `previous` the last pass's (8-bit levels); `last` is the last frame
    index. Pass 1 starts every frame from `first`. Sequential passes go forward when odd
    (artistic_video_multiPass.lua: `run % 2`), backward when even."""
    slots = 2 if parallel else 1
    shape = first.shape
    if number == 1:
        return Job(first, np.zeros((slots, *shape), np.float32),
                   np.zeros((slots, *shape[:2]), np.float32), [])
    forward = number % 2 == 1
    comes_from = t - 1 if forward else t + 1
    neighbours = []  # (frame, its result, blend weight, tied)
    for b in (t - 1, t + 1):
        if not 0 <= b <= last:
            continue
        if parallel:
            neighbours.append((b, previous[b], hp.blend_weight, True))
        else:
            source = current if b == comes_from else previous
            weight = hp.blend_weight if b == comes_from else hp.blend_weight_other
            neighbours.append((b, source[b], weight, b == comes_from))
    init = previous[t].astype(np.float32).copy()
    divisor = np.ones(shape[:2], np.float32)
    tied = []
    for b, result, weight, ties in neighbours:
        p = pair(t, b)
        blend = p.weights * weight
        init += blend[..., None] * _warp(result, p.flow)
        divisor += blend
        if ties:
            tied.append((b, result, p))
    init /= divisor[..., None]
    warped = np.zeros((slots, *shape), np.float32)
    weights = np.zeros((slots, *shape[:2]), np.float32)
    if number >= hp.temporal_after and float(hp.temporal_weight) > 0:
        for j, (b, result, p) in enumerate(tied):
            warped[j], weights[j] = _warp(result, p.flow), p.weights
    return Job(init, warped, weights, [b for b, _, _ in tied]
               if number >= hp.temporal_after else [])


def _order(number: int, count: int, hp: VideoParams) -> list[int]:
    """The frames of pass `number` in the order they are made."""
    forward = hp.passes == 1 or number % 2 == 1 or hp.pass_mode == "parallel"
    return list(range(count)) if forward else list(range(count - 1, -1, -1))


def run(content: list[np.ndarray], styles: list[np.ndarray], hp: VideoParams,
        opts: RunOptions, weights: VGGWeights, key: jax.Array | None = None, *, labels=None,
        init=None, snapshot=None, checkpoint: pathlib.Path | None = None,
        progress: bool = True,
        on_frame: Callable[[int, int, np.ndarray, dict], None] | None = None,
        finished: Callable[[int, int], np.ndarray | None] | None = None) -> runs.Result:
    """Stylises a clip.

    Args:
      content: the clip's frames (from --start_frame on, --num_frames of them), float[H, W, 3]
        in [0, 1], one size; resized to --size on the longer edge.
      styles: float[H_i, W_i, 3] in [0, 1].
      key: the noise init's key (default: `jax.random.key(opts.seed)`), one noise image for
        every frame that starts from noise (as the code's randImg).
      checkpoint: where the run's position is kept (after every frame, and the state of a
        frame interrupted midway); a matching checkpoint there is resumed from.
      on_frame: called as on_frame(pass, index, image, record) for every frame finished (pass
        1-based, index 0-based, the image float32[H', W', 3] in [0, 1] at the working size,
        8-bit values), so that the caller can write it at once.
      finished: when resuming, finished(pass, index) -> the image on_frame got for that frame.
    Returns:
      Result with images {"frame_0001": ..., ...} (the last pass's, in [0, 1]), the run's
      record (its "frames": each frame's record) and the loss history.
    Raises:
      InputError: bad options or inputs (before any work), a checkpoint of another run.
      runs.Stopped: Ctrl-C or SIGTERM; the position (and a frame's state) is in `checkpoint`.
    """
    del labels, init, snapshot
    started = time.perf_counter()
    validate(hp, opts, len(styles))
    if not content:
        raise InputError("the clip has no frames; give --start_frame and --num_frames within it")
    parallel = hp.passes > 1 and hp.pass_mode == "parallel"
    h, w = image_lib.fit_edge(*content[0].shape[:2], opts.size)
    memory_entry = memory.require(
        memory.pixel_run_gib(h, w, opts.optimizer, opts.lbfgs_memory)
        * (len(content) if parallel else 1) + clip_gib(len(content), h, w, hp),
        "lower --size or --num_frames, or use --pass_mode=sequential" if parallel else
        "lower --size or --num_frames, or use --optimizer=adam or a smaller --lbfgs_memory")
    key = jax.random.key(opts.seed) if key is None else key
    record = runs.start_record("video", hp, opts, weights, content[0], styles, None)
    record["inputs"] = results.array_digest(*content, *styles)
    saved = runs.checkpoint_of(checkpoint, record)

    frames = [image_lib.resize_to_edge(f, opts.size) for f in content]
    _, work_styles = runs.prepare_colors(content[0], styles, opts)  # "match": to frame 1's colours
    shared, first_levels, style_levels, blend = objective.prepare_data(
        content[0], work_styles, hp, opts, weights)
    convention = weights.convention
    levels = [image_lib.to_levels(f) for f in frames]
    contents = [objective.content_targets(shared, lv, convention) for lv in levels]
    start = runs.initial_image(key, opts.init, first_levels, style_levels, opts.init_noise)
    pair = FlowSource(frames, hp)
    count = len(frames)
    if hp.flow_pattern:  # every file read first: a missing or misfit one fails before any frame
        for a, b in pairs_needed(count, hp):
            pair(a, b)
    position = saved["position"] if saved else {"pass": 1, "done": 0, "in_frame": False}
    history: list[dict] = list(saved["history"]) if saved else []
    records: list[dict] = list(saved["frames"]) if saved else []

    done_by_pass: dict[int, dict[int, np.ndarray]] = {}  # pass -> frame -> result, 8-bit levels
    for number in range(1, position["pass"] + 1):  # what a resumed run had finished
        order = _order(number, count, hp)
        done = order if number < position["pass"] else order[:position["done"]]
        if number >= position["pass"] - 1:
            done_by_pass[number] = {t: np.round(image_lib.to_levels(finished(number, t)))
                               for t in done}

    bar = Progress(hp.passes * count, "video", enabled=progress, unit="frame")
    steps_done = sum(r["steps"] for r in records)

    def save_position(state, number, done, in_frame):
        optimize.save_checkpoint(checkpoint, state, {
            **record, "position": {"pass": number, "done": done, "in_frame": in_frame},
            "frames": records, "history": history, "step": steps_done})

    def finish(number, t, image, frame_record):
        nonlocal steps_done
        done_by_pass.setdefault(number, {})[t] = image
        steps_done += frame_record["steps"]
        records.append(frame_record)
        if on_frame is not None:
            on_frame(number, t, image / 255.0, frame_record)

    def data_of(job_list, ts):
        stack = lambda xs: jnp.asarray(np.stack(xs))
        if len(ts) == 1:
            job, t = job_list[0], ts[0]
            return Data(shared, contents[t], jnp.asarray(job.warped), jnp.asarray(job.weights))
        return Data(shared, jax.tree.map(lambda *xs: jnp.stack(xs), *[contents[t] for t in ts]),
                    stack([j.warped for j in job_list]), stack([j.weights for j in job_list]))

    first_pass = position["pass"]
    at = {"pass": first_pass, "frame": None}  # where the loop stands, for an interruption
    where = lambda: (f"frame {at['frame']} of pass {at['pass']}" if at["frame"] else
                     f"pass {at['pass']} (every frame midway)")
    try:
        for number in range(first_pass, hp.passes + 1):
            order = _order(number, count, hp)
            skip = position["done"] if number == first_pass else 0
            resuming = saved is not None and number == first_pass and position["in_frame"]
            steps = opts.steps if hp.passes > 1 or number > 1 else None
            previous = done_by_pass.get(number - 1, {})
            at.update({"pass": number, "frame": None})
            if parallel:
                before = pair.seconds
                jobs = [multi_pass_job(t, number, count - 1, {}, previous, pair, hp, start,
                                       True) for t in order]
                _parallel_pass(number, jobs, order, data_of(jobs, order), hp, opts, convention,
                               style_levels, blend, frames, checkpoint, resuming, finish,
                               pair.seconds - before, save_position, bar)
                continue
            for place, t in enumerate(order[skip:], start=skip):
                at["frame"] = t + 1
                t0, before = time.perf_counter(), pair.seconds
                if hp.passes == 1:
                    job = single_pass_job(t, done_by_pass.get(1, {}), pair, hp, start)
                else:
                    job = multi_pass_job(t, number, count - 1, done_by_pass.get(number, {}),
                                         previous, pair, hp, start, False)
                flow_seconds = pair.seconds - before
                frame_steps = steps or (hp.first_frame_steps if t == 0 else opts.steps)
                frame_opts = dataclasses.replace(opts, steps=frame_steps)
                problem = runs.make_problem(loss_terms, data_of([job], [t]), convention,
                                            frame_opts, levels[t], style_levels, blend,
                                            job.init)
                initial = _floats(problem.terms(jnp.asarray(job.init), problem.data))
                done = runs.optimise(
                    problem, frame_steps, frame_opts, level=number - 1, offset=steps_done,
                    record={**record, "position": {"pass": number, "done": place,
                                                   "in_frame": True},
                            "frames": records}, history=history, bar=None,
                    resume=resuming and place == skip, checkpoint=checkpoint)
                image = _result(done.image, frames[t], opts)
                state = done.state
                finish(number, t, image, {
                    "pass": number, "frame": t + 1, "source_frame": hp.start_frame + t,
                    "steps": int(state.step), "stopped": _stopped(state),
                    "initial_loss": initial,
                    "final_loss": _floats(problem.terms(jnp.asarray(image), problem.data)),
                    "tied_to": [b + 1 for b in job.tied_to],
                    "reliable_fraction": round(float(job.weights.sum(0).clip(0, 1).mean()), 4),
                    "flow_seconds": round(flow_seconds, 4),
                    "seconds": round(time.perf_counter() - t0, 3)})
                if checkpoint is not None:
                    save_position(state, number, place + 1, False)
                bar.update((number - 1) * count + place + 1,
                           f"pass {number} frame {t + 1}: {records[-1]['final_loss']['total']:.4g}")
    except runs.Stopped as e:
        raise runs.Stopped(e.step, e.checkpoint, where()) from None
    except KeyboardInterrupt:  # between optimisations: every finished frame is kept
        raise runs.Stopped(steps_done, checkpoint, f"{where()} (the frames before it are "
                           "finished)") from None
    bar.close()
    last = done_by_pass[hp.passes]
    record.update({
        "size": [h, w], "style_sizes": [list(s.shape[:2]) for s in style_levels],
        "style_blend_weights": blend, "frames": records, "steps": steps_done,
        "flow": "files" if hp.flow_pattern else f"DIS {hp.flow_preset}",
        "flow_seconds": round(sum(r["flow_seconds"] for r in records), 3),
        "memory": memory.measured(memory_entry),
        "seconds": time.perf_counter() - started})
    images = {f"frame_{t + 1:04d}": last[t] / 255.0 for t in range(count)}
    return runs.Result(images=images, record=record, history=history)


def _floats(terms: dict) -> dict[str, float]:
    return {k: float(v) for k, v in terms.items()}


def _stopped(state: optimize.LoopState) -> str:
    return "nan" if bool(state.failed) else "converged" if bool(state.converged) else "steps"


def _parallel_pass(number, jobs, order, data, hp, opts, convention, style_levels, blend, frames,
                   checkpoint, resume, finish, flow_seconds, save_position, bar):
    """Pass `number` with every frame at once: one vmapped problem over the frames, split over
    the devices; its state is checkpointed when interrupted."""
    t0 = time.perf_counter()
    compiled = runs.compile_program(loss_terms, convention, opts, Data.sweep_axes())
    inits = np.stack([j.init for j in jobs])
    state = jax.vmap(lambda x: optimize.init(compiled.optimizer, x))(jnp.asarray(inits))
    problem = runs.Problem(compiled.chunk, state, data, compiled.terms, inits[0],
                           style_levels, blend, inits)
    count = len(order)
    if len(jax.local_devices()) > 1 and count % len(jax.local_devices()) == 0:
        problem = runs.shard(problem)
    state = problem.state
    if resume and checkpoint is not None:
        state = optimize.load_checkpoint(checkpoint, state) or state
    initial = _floats_batch(compiled.terms(jnp.asarray(inits), problem.data))
    try:
        state = optimize.run(problem.chunk, state, problem.data,
                             optimize.boundaries(opts.steps, opts.print_every))
    except optimize.Interrupted as e:
        if checkpoint is not None:
            save_position(e.state, number, 0, True)
        raise runs.Stopped(int(jnp.max(e.state.step)), checkpoint) from None
    images = np.asarray(jnp.where(state.failed[:, None, None, None], state.good_image,
                                  state.image))
    images = np.stack([_result(i, frames[t], opts) for i, t in zip(images, order)])
    final = _floats_batch(compiled.terms(jnp.asarray(images), problem.data))
    seconds = time.perf_counter() - t0
    for k, t in enumerate(order):
        one = jax.tree.map(lambda a: a[k], state)
        finish(number, t, images[k], {
            "pass": number, "frame": t + 1, "source_frame": hp.start_frame + t,
            "steps": int(one.step), "stopped": _stopped(one),
            "initial_loss": initial[k], "final_loss": final[k],
            "tied_to": [b + 1 for b in jobs[k].tied_to],
            "reliable_fraction": round(float(jobs[k].weights.sum(0).clip(0, 1).mean()), 4),
            "flow_seconds": round(flow_seconds / len(order), 4),
            "seconds": round(seconds / len(order), 3)})
    if checkpoint is not None:
        save_position(jax.tree.map(lambda a: a[-1], state), number + 1, 0, False)
    bar.update(number * count, f"pass {number}")


def _floats_batch(terms: dict) -> list[dict[str, float]]:
    """{term: float[K]} -> K dicts of floats."""
    values = {k: np.asarray(v) for k, v in terms.items()}
    return [{k: float(v[i]) for k, v in values.items()} for i in range(len(values["total"]))]
