"""Ruder et al.'s video method: its settings (the Gatys objective's, the temporal term's and
the frame loop's), presets (the authors' scripts) and the objective of a frame."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import objective
from jstyle.engine import options
from jstyle.engine.options import IMAGENET_MEAN_RGB, RunOptions
from jstyle.errors import InputError
from jstyle.objective import GatysParams
from jstyle.ops import flow, losses
from jstyle.params import field, pytree

OPTIONS = tuple(f.name for f in dataclasses.fields(RunOptions) if f.name not in (
    "pyramid_levels", "pyramid_ratio", "pyramid_min_size", "pyramid_steps", "unmatched",
    "save_every"))
RESUMABLE = True
LATER_INITS = ("prev_warped", "prev", "init")
PASS_MODES = ("sequential", "parallel")
COMBINATIONS = ("closest_first", "normalize")
MEAN_PIXEL = np.asarray(IMAGENET_MEAN_RGB, np.float32)  # the code's warpImage fill


@pytree
@dataclasses.dataclass(frozen=True)
class VideoParams(GatysParams):
    """The Gatys objective's hyperparameters, the temporal term's and the frame loop's."""
    temporal_weight: Any = field(1e3, "Temporal consistency weight gamma (0: frames on their "
                                 "own).")
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
    options.check_nonnegative({"temporal_weight": [hp.temporal_weight],
                            "blend_weight": [hp.blend_weight],
                            "blend_weight_other": [hp.blend_weight_other]})
    options.check_at_least({"first_frame_steps": hp.first_frame_steps, "passes": hp.passes,
                         "temporal_after": hp.temporal_after},
                        1, "give a positive whole number")
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
