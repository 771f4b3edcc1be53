"""The optax loop that optimises an image: compiled chunks, progress between them, snapshots.

The caller supplies a pure `objective(image, data) -> float[]`, where `data` is a pytree of
arrays (network weights, targets, loss weights) passed to the compiled chunk as an argument, so
nothing large is baked into the program as a constant. One chunk runs up to a given step inside
`lax.while_loop`; the Python loop between chunks reports progress, writes snapshots and
checkpoints. Every chunk reuses the first chunk's compiled program.

Optimisers: `lbfgs` is optax's L-BFGS with its zoom line search (the value and gradient the line
search computed are reused, so a step costs one evaluation plus any extra line-search trials;
its first step can be given a size, `make_optimizer`);
`adam` is `optax.adam`, one evaluation per step. Adam projects pixels onto [lo, hi] after every
step. L-BFGS runs unconstrained, since clipping between steps would break the line search's
cached values and the curvature pairs; its images are clipped wherever they are read out (as in
jcjohnson/neural-style).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jstyle.system import interrupt
from jstyle.errors import InputError

OPTIMIZERS = ("lbfgs", "adam")
INTERRUPT_EVERY = 10  # steps between checks for Ctrl-C and SIGTERM (a host sync each)
LINESEARCHES = ("zoom", "none")


class LoopState(NamedTuple):
    """Everything the loop carries; a pytree that can be saved and resumed."""
    image: jax.Array  # float32[H, W, C], the pixels being optimised
    opt_state: Any  # the optimiser's state pytree
    step: jax.Array  # int32[], optimisation steps taken so far
    loss: jax.Array  # float32[], objective at the image before the last step (inf at start)
    good_image: jax.Array  # float32[H, W, C], the last image whose objective was finite
    converged: jax.Array  # bool[], the objective changed by less than tol over the last
    #   tol_interval steps
    past_loss: jax.Array  # float32[], objective at the last multiple of tol_interval steps
    failed: jax.Array  # bool[], the objective became NaN or infinite; `image` is not good


def last_good(state: LoopState) -> jax.Array:
    """The state's image in [0, 255], or where the loss became NaN the last good one:
    float32[H, W, 3], or [K, H, W, 3] for a batch of K states."""
    failed = jnp.reshape(state.failed, jnp.shape(state.failed)
                         + (1,) * (state.image.ndim - jnp.ndim(state.failed)))
    return jnp.clip(jnp.where(failed, state.good_image, state.image), 0.0, 255.0)


def make_optimizer(name: str, learning_rate: float, memory_size: int = 10,
                   linesearch: str = "zoom", first_step: float | None = None
                   ) -> optax.GradientTransformationExtraArgs:
    """`lbfgs` or `adam`.

    L-BFGS's line search: "zoom" (optax's: strong Wolfe conditions, up to 20 trials;
    `learning_rate` unused) or "none" (a fixed step of `learning_rate` along the L-BFGS
    direction, one evaluation per step, as Torch's optim.lbfgs without a line search, which
    CNNMRF uses). "none" suits objectives that are only piecewise smooth, such as CNNMRF's,
    whose nearest-neighbour field changes between trials: there the curvature condition is
    seldom met and zoom spends all its trials.

    `first_step` (zoom only): the first direction, which has no curvature pairs to scale it,
    is scaled to this root-mean-square change per element (an image's: 8-bit levels). optax
    caps the first step's Euclidean norm at 1 instead: over a 2048 x 1536 image that moves a
    pixel by 3e-4 levels, so the line search spent its trials doubling the step (16 at 1024
    px, more at 2048, benchmarks/lbfgs_benchmark.py), and the first curvature pair, taken over so
    short a step, was mostly rounding. None: optax's first step.
    """
    if name == "lbfgs":
        if linesearch not in LINESEARCHES:
            raise InputError(f"unknown --linesearch={linesearch}; use zoom or none")
        if linesearch == "zoom" and first_step is not None:
            return optax.chain(
                optax.scale_by_lbfgs(memory_size=memory_size), _scaled_first_step(first_step),
                optax.scale(-1.0), optax.scale_by_zoom_linesearch(
                    max_linesearch_steps=20, initial_guess_strategy="one"))
        if linesearch == "zoom":
            return optax.lbfgs(memory_size=memory_size)
        return optax.chain(optax.scale_by_lbfgs(memory_size=memory_size),
                           _fixed_steps(learning_rate))
    if name == "adam":
        return optax.with_extra_args_support(optax.adam(learning_rate))
    raise InputError(f"unknown optimizer {name!r}; use lbfgs or adam")


def _scaled_first_step(rms: float) -> optax.GradientTransformation:
    """Scales the first update to a root-mean-square of `rms` per element; later updates pass
    unchanged."""
    def init(params):
        del params
        return jnp.zeros([], jnp.int32)

    def update(updates, count, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        size = sum(u.size for u in leaves)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(u)) for u in leaves) / size)
        scale = jnp.where(count == 0, rms / jnp.maximum(norm, 1e-30), 1.0)
        return jax.tree.map(lambda u: scale * u, updates), count + 1

    return optax.GradientTransformation(init, update)


def _fixed_steps(learning_rate: float) -> optax.GradientTransformation:
    """Descent by `learning_rate` times the direction, except a first step of
    learning_rate * min(1, 1 / |d|_1): Torch's optim.lbfgs without a line search, whose first
    direction is the raw gradient (no curvature pairs yet) and would jump far."""
    def init(params):
        del params
        return jnp.zeros([], jnp.int32)

    def update(updates, count, params=None):
        del params
        norm = sum(jnp.sum(jnp.abs(u)) for u in jax.tree.leaves(updates))
        first = jnp.minimum(1.0, 1.0 / jnp.maximum(norm, 1e-30))
        scale = -learning_rate * jnp.where(count == 0, first, 1.0)
        return jax.tree.map(lambda u: scale * u, updates), count + 1

    return optax.GradientTransformation(init, update)


def init(optimizer: optax.GradientTransformation, image: jax.Array) -> LoopState:
    """The state before the first step; `image` is float32[H, W, C]."""
    image = jnp.asarray(image, jnp.float32)
    # Strongly typed leaves: optax's line-search info starts weakly typed, and a chunk's output
    # state must have exactly the input's types or the next chunk recompiles.
    opt_state = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype),
                             optimizer.init(image))
    # good_image gets its own buffer: chunks donate the state, and a buffer is donated once
    return LoopState(image=image, opt_state=opt_state, step=jnp.int32(0),
                     loss=jnp.float32(jnp.inf), good_image=jnp.array(image, copy=True),
                     converged=jnp.bool_(False), past_loss=jnp.float32(jnp.inf),
                     failed=jnp.bool_(False))


def make_chunk(objective: Callable[[jax.Array, Any], jax.Array],
               optimizer: optax.GradientTransformationExtraArgs, *, linesearch: str | None,
               tol: float, bounds: tuple[float, float] | None, data_axes: Any = None,
               tol_interval: int = 1):
    """Returns jitted `chunk(state, end, data) -> state` that steps until `end` or a stop.

    With `data_axes` (a tuple, or NamedTuple, with one entry per element of the tuple `data`: 0
    where that element has a leading batch axis, None where it is shared; e.g. a method's
    `Data.sweep_axes()`, which batches only the hyperparameters), the chunk runs a batch:
    every leaf of the state has a leading batch axis, and each point stops on its own. The
    points are vmapped (the loop runs while any point is going), except with the zoom line
    search, whose conditionals would become selects under vmap, evaluating the loss in both
    branches of every trial (22x the time of single runs, measured): there `jax.lax.map` runs
    the points one after another inside the one compiled program.

    `linesearch`: the optimiser's line search, which gets the objective: "zoom" (whose state
    holds the value and gradient at the accepted step, reused by the next step) or None (no
    line search: the image is projected onto `bounds` after each step).

    A step: evaluate the objective and gradient at the image, update it, project. The run
    stops early when the objective is not finite (`failed`) or, at every multiple of
    `tol_interval` steps, has changed by less than `tol` relative to its value `tol_interval`
    steps before (`converged`; tol = 0 never stops; the video code's lbfgs.lua compares every
    tol_loss_relative_interval = 50 iterations).
    """

    def chunk(state: LoopState, end: jax.Array, data: Any) -> LoopState:
        value_fn = lambda image: objective(image, data)
        if linesearch == "zoom":
            value_and_grad = optax.value_and_grad_from_state(value_fn)
        else:
            value_and_grad = lambda image, state: jax.value_and_grad(value_fn)(image)

        def keep_going(s: LoopState):
            return (s.step < end) & ~s.converged & ~s.failed

        def step(s: LoopState) -> LoopState:
            value, grad = value_and_grad(s.image, state=s.opt_state)
            finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
            updates, opt_state = optimizer.update(grad, s.opt_state, s.image, value=value,
                                                  grad=grad, value_fn=value_fn)
            image = optax.apply_updates(s.image, updates)
            if bounds is not None and linesearch is None:
                image = jnp.clip(image, *bounds)
            check = s.step % tol_interval == 0
            change = jnp.abs(s.past_loss - value) / jnp.maximum(jnp.abs(s.past_loss), 1e-30)
            converged = check & (s.step > 0) & (change < tol)
            keep = lambda new, old: jax.tree.map(
                lambda a, b: jnp.where(finite, a, b), new, old)
            return LoopState(
                image=keep(image, s.image), opt_state=keep(opt_state, s.opt_state),
                step=s.step + finite.astype(jnp.int32), loss=jnp.where(finite, value, s.loss),
                good_image=jnp.where(finite, s.image, s.good_image),
                converged=converged & finite,
                past_loss=jnp.where(check & finite, value, s.past_loss), failed=~finite)

        return jax.lax.while_loop(keep_going, step, state)

    if data_axes is not None:
        chunk = (_mapped(chunk, data_axes) if linesearch == "zoom"
                 else jax.vmap(chunk, in_axes=(0, None, data_axes)))
    return jax.jit(chunk, donate_argnums=0)  # the old state is dead: reuse its buffers


def _mapped(chunk: Callable, data_axes: tuple) -> Callable:
    """`chunk` over a batch of states, point by point (lax.map); see make_chunk."""
    def run(state: LoopState, end: jax.Array, data: tuple) -> LoopState:
        batched = tuple(d for d, axis in zip(data, data_axes) if axis == 0)

        def one(point):
            single, own = point
            parts = iter(own)
            return chunk(single, end, type(data)(*(next(parts) if axis == 0 else d
                                                   for d, axis in zip(data, data_axes))))
        return jax.lax.map(one, (state, batched))
    return run


def boundaries(steps: int, *everies: int) -> list[int]:
    """Sorted steps at which the loop pauses: multiples of each positive `every`, and `steps`."""
    points = {steps}
    for every in everies:
        if every > 0:
            points.update(range(every, steps, every))
    return sorted(points)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during `run`; `state` is the last finished chunk's state, to
    checkpoint."""

    def __init__(self, state: LoopState):
        super().__init__()
        self.state = state


def run(chunk, state: LoopState, data: Any, stops: list[int],
        on_stop: Callable[[LoopState], None] = lambda s: None,
        interrupt_every: int = INTERRUPT_EVERY) -> LoopState:
    """Runs `chunk` from `state` up to each step in `stops`, calling `on_stop` after each.

    Returns early once the state (every point of a batched state) has converged or failed.
    Ctrl-C and SIGTERM are answered between chunks of at most `interrupt_every` steps (a
    chunk's input state is donated to it, so only a finished chunk's state can be saved).

    Raises:
      Interrupted: after Ctrl-C or SIGTERM, with the last finished chunk's state.
    """
    interrupt.check()  # a signal lost before the loop began
    stop = threading.Event()
    restore = interrupt.defer(stop)
    finished = lambda s: bool(jnp.all(s.converged | s.failed))
    try:
        for end in stops:
            if int(jnp.min(state.step)) >= end:
                continue
            while True:  # sub-chunks: the points still going all stand at the largest step
                ahead = min(end, int(jnp.max(state.step)) + interrupt_every)
                state = chunk(state, jnp.int32(ahead), data)
                reached = finished(state) or int(jnp.max(state.step)) >= end
                if stop.is_set():
                    if reached:  # the stop's report and snapshot, before the checkpoint
                        on_stop(state)
                    raise Interrupted(state)
                if reached:
                    break
            on_stop(state)
            if finished(state):
                break
    finally:
        restore()
    return state
