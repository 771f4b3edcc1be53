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
the authors' precomputed files (the clip's flows, jstyle.image.clips.Flows; the command's
--flow_pattern=backward_[%d]_{%d}.flo --flow_weight_pattern=reliable_[%d]_{%d}.pgm: `[%d]`
is the frame being made, `{%d}` the frame its flow points to, frames numbered from
--start_frame). Reliability c: the authors'
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
split over the devices (`jstyle.engine.program.shard`): a Jacobi variant of the code's
Gauss-Seidel sweeps, so that a clip fills an accelerator instead of running frame by frame.

Every frame of a clip runs on one compiled program: the content targets, the warped frames and
their weights are the program's data (a frame without an earlier one has weight 0). A result
is rounded to 8 bits before later frames use it, as the code reads each result back from its
PNG, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jstyle import image as image_lib
from jstyle import objective
from jstyle.engine.images import initial_image, prepare_colors
from jstyle.engine.kinds import Clip, Images
from jstyle.engine.options import RunOptions, pyramid
from jstyle.engine.session import Result, Session, Stopped, made
from jstyle.errors import InputError
from jstyle.methods.video.flows import (  # noqa: F401  (the method's pieces)
    FlowSource, Pair, check_flows, clip_gib, combine, fill_pattern, pairs_needed, rounded, warp)
from jstyle.methods.video.frames import (  # noqa: F401
    Course, Job, Work, frame_name, multi_pass_job, order, parallel_pass, sequential_pass,
    single_pass_job)
from jstyle.methods.video.settings import (  # noqa: F401
    COMBINATIONS, LATER_INITS, MEAN_PIXEL, OPTIONS, PASS_MODES, PRESETS, RESUMABLE, Data,
    Params, VideoParams, loss_terms, validate)
from jstyle.nets.weights import VGGWeights
from jstyle.system import memory


class Inputs(NamedTuple):
    """A clip and the style images."""
    clip: Clip  # jstyle.image.clips.Clip: frames float[H, W, 3] in [0, 1], one size; fps;
    #   the number of its first frame; precomputed flows or None
    styles: Images  # float[H_i, W_i, 3] in [0, 1]


def prepare(key: jax.Array, inputs: Inputs, hp: VideoParams, opts: RunOptions,
            weights: VGGWeights) -> Work:
    """The clip made ready: frames at --size, their content targets, the style targets, the
    first frame's start (one noise image for every frame that starts from noise, as the code's
    randImg) and the flows (precomputed files all read now: a missing or misfit one fails
    before any frame)."""
    clip = inputs.clip
    frames = [image_lib.resize_to_edge(f, opts.size) for f in clip.frames]
    _, work_styles = prepare_colors(clip.frames[0], inputs.styles, opts)  # "match": frame 1's
    shared, first_levels, style_levels, blend = objective.prepare_data(
        clip.frames[0], work_styles, hp, opts, weights)
    levels = [image_lib.to_levels(f) for f in frames]
    contents = [objective.content_targets(shared, lv, weights.convention) for lv in levels]
    start = initial_image(key, opts.init, first_levels, style_levels, opts.init_noise)
    pair = FlowSource(frames, hp, clip.first, clip.flows)
    if clip.flows is not None:
        for a, b in pairs_needed(len(frames), hp):
            pair(a, b)
    return Work(frames, levels, contents, shared, style_levels, blend, start, pair,
                weights.convention)


def _resumed(position: dict, count: int, hp: VideoParams, session: Session) -> dict:
    """The results a resumed run had finished, read back from the images it kept: pass ->
    frame -> float32[H, W, 3] in whole 8-bit levels (the passes a later frame needs)."""
    done = {}
    for number in range(max(1, position["pass"] - 1), position["pass"] + 1):
        frames = order(number, count, hp)
        finished = frames if number < position["pass"] else frames[:position["done"]]
        done[number] = {t: np.round(image_lib.to_levels(session.kept(frame_name(number, t, hp))))
                        for t in finished}
    return done


def run(key: jax.Array, inputs: Inputs, hp: VideoParams, opts: RunOptions,
        weights: VGGWeights, *, session: Session) -> Result:
    """Stylises a clip; `key` draws the noise init. Every finished frame is kept at once
    (`session.keep`: frame_%04d, earlier passes' under passes/); the run's position, and the
    state of a frame interrupted midway, are checkpointed, and a matching checkpoint is
    resumed from.

    Returns:
      Result with images {"frame_0001": ..., ...} (the last pass's, in [0, 1] at the working
      size), the run's record (its "frames": each frame's record) and the loss history.
    Raises:
      InputError: bad options or inputs (before any work), a checkpoint of another run.
      Stopped: Ctrl-C or SIGTERM; the position (and a frame's state) is in the checkpoint.
    """
    validate(hp, opts, len(inputs.styles))
    clip = inputs.clip
    check_flows(clip.flows, hp)
    if not clip.frames:
        raise InputError("the clip has no frames; give --start_frame and --num_frames within it")
    parallel, count = hp.passes > 1 and hp.pass_mode == "parallel", len(clip.frames)
    h, w = image_lib.fit_edge(*clip.frames[0].shape[:2], opts.size)
    session.require(
        memory.pixel_run_gib(h, w, opts.optimizer, opts.lbfgs_memory) * (count if parallel else 1)
        + clip_gib(count, h, w, hp), "lower --size or --num_frames, or use "
        + ("--pass_mode=sequential" if parallel else "--optimizer=adam or a smaller "
           "--lbfgs_memory"))
    saved = session.begin(made(
        "video", hp, opts, weights, [*clip.frames, *inputs.styles],
        clip={"first": clip.first, "flows": None if clip.flows is None else
              clip.flows._asdict()},
        levels=[{"size": s, "steps": n} for s, n in pyramid(opts)]),
        total=hp.passes * count, unit="frame")
    work = prepare(key, inputs, hp, opts, weights)
    position = saved or {"pass": 1, "done": 0, "in_frame": False}
    course = Course(list(saved["frames"]) if saved else [],
                    _resumed(position, count, hp, session) if saved else {})
    try:
        for number in range(position["pass"], hp.passes + 1):
            course.at.update({"pass": number, "frame": None})
            resume = saved is not None and number == position["pass"] and position["in_frame"]
            if parallel:
                parallel_pass(number, work, course, hp, opts, session, first=clip.first,
                              resume=resume)
            else:
                sequential_pass(number, work, course, hp, opts, session, first=clip.first,
                                skip=position["done"] if number == position["pass"] else 0,
                                resume=resume)
    except KeyboardInterrupt as e:  # a frame's state, or every finished frame, is kept
        midway = "" if isinstance(e, Stopped) else " (the frames before it are finished)"
        raise session.stopped(course.where() + midway) from None
    last = course.done[hp.passes]
    return session.result(
        {f"frame_{t + 1:04d}": last[t] / 255.0 for t in range(count)},
        size=[h, w], style_sizes=[list(s.shape[:2]) for s in work.style_levels],
        style_blend_weights=work.blend, frames=course.records, steps=course.steps,
        flow="files" if clip.flows is not None else f"DIS {hp.flow_preset}",
        flow_seconds=round(sum(r["flow_seconds"] for r in course.records), 3))
