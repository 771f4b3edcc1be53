"""Ruder et al.'s video method, the frame loop: where each frame of a pass starts and what
ties it (jobs), and the passes themselves, sequential (frame by frame, the authors' sweeps) or
parallel (every frame at once, vmapped over the devices)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import objective
from jstyle.engine import optimize
from jstyle.engine.options import RunOptions
from jstyle.engine.program import Problem, compile_program, make_problem, shard
from jstyle.engine.session import Session, floats, stop_reason
from jstyle.methods.video.flows import FlowSource, Pair, combine, rounded, warp
from jstyle.methods.video.settings import Data, VideoParams, loss_terms


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
        warped[j], weights[j] = warp(outputs[b], p.flow), w
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
        init = warp(outputs[t - 1], pair(t, t - 1).flow)
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
        init += blend[..., None] * warp(result, p.flow)
        divisor += blend
        if ties:
            tied.append((b, result, p))
    init /= divisor[..., None]
    warped = np.zeros((slots, *shape), np.float32)
    weights = np.zeros((slots, *shape[:2]), np.float32)
    if number >= hp.temporal_after and float(hp.temporal_weight) > 0:
        for j, (b, result, p) in enumerate(tied):
            warped[j], weights[j] = warp(result, p.flow), p.weights
    return Job(init, warped, weights, [b for b, _, _ in tied]
               if number >= hp.temporal_after else [])


def order(number: int, count: int, hp: VideoParams) -> list[int]:
    """The frames of pass `number` in the order they are made."""
    forward = hp.passes == 1 or number % 2 == 1 or hp.pass_mode == "parallel"
    return list(range(count)) if forward else list(range(count - 1, -1, -1))


class Work(NamedTuple):
    """A clip made ready: what every pass reads."""
    frames: list  # float32[H, W, 3] in [0, 1], the working frames
    levels: list  # the same in 8-bit levels
    contents: list  # per frame: layer -> its content features
    shared: objective.Data  # the network, style targets and hyperparameters
    style_levels: list  # the style images, resized, 8-bit levels
    blend: Any  # the normalised style blend weights
    start: np.ndarray  # the first frame's start (--init), 8-bit levels
    pair: FlowSource  # flows between frames
    convention: Any  # the network's input convention


@dataclasses.dataclass
class Course:
    """Where a run stands: every frame's record, the results of the passes kept (pass ->
    frame -> float32[H, W, 3] in whole 8-bit levels) and the frame being made."""
    records: list
    done: dict
    at: dict = dataclasses.field(default_factory=lambda: {"pass": 1, "frame": None})

    @property
    def steps(self) -> int:
        return sum(r["steps"] for r in self.records)

    def where(self) -> str:
        """Where the run stopped, for the message."""
        if self.at["frame"]:
            return f"frame {self.at['frame']} of pass {self.at['pass']}"
        return f"pass {self.at['pass']} (every frame midway)"

    def position(self, number: int, done: int, in_frame: bool) -> dict:
        """The checkpoint's position: pass `number`, `done` frames of it finished."""
        return {"pass": number, "done": done, "in_frame": in_frame, "frames": self.records,
                "step": self.steps}


def frame_name(number: int, t: int, hp: VideoParams) -> str:
    """The image name of frame t of pass `number`: the last pass's frame_%04d, the earlier
    passes' under passes/pass_%02d (kept for a resumed run)."""
    name = f"frame_{t + 1:04d}"
    return name if number == hp.passes else f"passes/pass_{number:02d}/{name}"


def finish(course: Course, session: Session, hp: VideoParams, number: int, t: int,
           image: np.ndarray, record: dict) -> None:
    """Frame t of pass `number` is done (`image` in whole 8-bit levels): kept, recorded and
    written with its record at once."""
    course.done.setdefault(number, {})[t] = image
    course.records.append(record)
    session.keep(frame_name(number, t, hp), image / 255.0, record)


def frame_data(work: Work, jobs: list[Job], ts: list[int]) -> Data:
    """The objective's data of frames `ts` (one frame: unbatched)."""
    if len(ts) == 1:
        job, t = jobs[0], ts[0]
        return Data(work.shared, work.contents[t], jnp.asarray(job.warped),
                    jnp.asarray(job.weights))
    stack = lambda xs: jnp.asarray(np.stack(xs))
    return Data(work.shared, jax.tree.map(lambda *xs: jnp.stack(xs),
                                          *[work.contents[t] for t in ts]),
                stack([j.warped for j in jobs]), stack([j.weights for j in jobs]))


def _entry(number: int, t: int, first: int, state, initial: dict, final: dict, job: Job,
           flow_seconds: float, seconds: float) -> dict:
    """A frame's record (`first`: the clip's number of frame 0)."""
    return {"pass": number, "frame": t + 1, "source_frame": first + t,
            "steps": int(state.step), "stopped": stop_reason(state), "initial_loss": initial,
            "final_loss": final, "tied_to": [b + 1 for b in job.tied_to],
            "reliable_fraction": round(float(job.weights.sum(0).clip(0, 1).mean()), 4),
            "flow_seconds": round(flow_seconds, 4), "seconds": round(seconds, 3)}


def sequential_pass(number: int, work: Work, course: Course, hp: VideoParams,
                    opts: RunOptions, session: Session, *, first: int, skip: int,
                    resume: bool) -> None:
    """Pass `number` frame by frame in its order (`order`), from the `skip`-th on; with
    `resume`, the first of them continues from the checkpoint's state."""
    count = len(work.frames)
    previous = course.done.get(number - 1, {})
    steps = opts.steps if hp.passes > 1 or number > 1 else None
    for place, t in enumerate(order(number, count, hp)[skip:], start=skip):
        course.at["frame"] = t + 1
        t0, before = time.perf_counter(), work.pair.seconds
        if hp.passes == 1:
            job = single_pass_job(t, course.done.get(1, {}), work.pair, hp, work.start)
        else:
            job = multi_pass_job(t, number, count - 1, course.done.get(number, {}), previous,
                                 work.pair, hp, work.start, False)
        flow_seconds = work.pair.seconds - before
        frame_steps = steps or (hp.first_frame_steps if t == 0 else opts.steps)
        frame_opts = dataclasses.replace(opts, steps=frame_steps)
        problem = make_problem(loss_terms, frame_data(work, [job], [t]), work.convention,
                               frame_opts, work.levels[t], work.style_levels, work.blend,
                               job.init)
        initial = floats(problem.terms(jnp.asarray(job.init), problem.data))
        done = session.optimise(problem, frame_steps, frame_opts, level=number - 1,
                                offset=course.steps,
                                position=course.position(number, place, True),
                                resume=resume and place == skip, report=False)
        image = rounded(done.image, work.frames[t], opts)
        finish(course, session, hp, number, t, image, _entry(
            number, t, first, done.state, initial,
            floats(problem.terms(jnp.asarray(image), problem.data)), job, flow_seconds,
            time.perf_counter() - t0))
        session.save(course.position(number, place + 1, False))  # between frames: no state
        session.update((number - 1) * count + place + 1, f"pass {number} frame {t + 1}: "
                       f"{course.records[-1]['final_loss']['total']:.4g}")


def parallel_pass(number: int, work: Work, course: Course, hp: VideoParams, opts: RunOptions,
                  session: Session, *, first: int, resume: bool) -> None:
    """Pass `number` with every frame at once: one vmapped problem over the frames, split over
    the devices; its state is checkpointed when interrupted."""
    t0, before, count = time.perf_counter(), work.pair.seconds, len(work.frames)
    ts = order(number, count, hp)
    jobs = [multi_pass_job(t, number, count - 1, {}, course.done.get(number - 1, {}),
                           work.pair, hp, work.start, True) for t in ts]
    flow_seconds = work.pair.seconds - before
    compiled = compile_program(loss_terms, work.convention, opts, Data.sweep_axes())
    inits = np.stack([j.init for j in jobs])
    state = jax.vmap(lambda x: optimize.init(compiled.optimizer, x))(jnp.asarray(inits))
    problem = Problem(compiled.chunk, session.restore(state) if resume else state,
                      frame_data(work, jobs, ts), compiled.terms, inits[0], work.style_levels,
                      work.blend, inits)
    if len(jax.local_devices()) > 1 and count % len(jax.local_devices()) == 0:
        problem = shard(problem)  # after the restore, which gives unsharded arrays
    state = problem.state
    initial = _floats_batch(compiled.terms(jnp.asarray(inits), problem.data))
    try:
        state = optimize.run(problem.chunk, state, problem.data,
                             optimize.boundaries(opts.steps, opts.print_every),
                             lambda s: session.update((number - 1) * count, f"pass {number}: "
                                                      f"step {int(s.step.max())} of {opts.steps}"))
    except optimize.Interrupted as e:
        session.save(course.position(number, 0, True), e.state)
        raise session.stopped(course.where()) from None
    images = np.asarray(optimize.last_good(state))
    images = np.stack([rounded(i, work.frames[t], opts) for i, t in zip(images, ts)])
    final = _floats_batch(compiled.terms(jnp.asarray(images), problem.data))
    seconds = time.perf_counter() - t0
    for k, t in enumerate(ts):
        finish(course, session, hp, number, t, images[k], _entry(
            number, t, first, jax.tree.map(lambda a: a[k], state), initial[k], final[k],
            jobs[k], flow_seconds / count, seconds / count))
    session.save(course.position(number + 1, 0, False))
    session.update(number * count, f"pass {number}")


def _floats_batch(terms: dict) -> list[dict[str, float]]:
    """{term: float[K]} -> K dicts of floats."""
    values = {k: np.asarray(v) for k, v in terms.items()}
    return [{k: float(v[i]) for k, v in values.items()} for i in range(len(values["total"]))]
