"""Many configurations of a method as one compiled program (Gatys by default).

The hyperparameters that vary between points (for Gatys alpha, beta, w_tv, w_hist and the
per-layer weights) are leaves of the method's Params, so K points stack into one pytree with a
leading batch axis and the optimisation is `jax.vmap`ped over it. Layer choices vary too: every
point is mapped onto the union of all points' layers (each `X_layers` field with its
`X_layer_weights`), a layer a point does not use getting weight 0. The network runs once per
evaluation for the union; the targets are computed once (the method's `prepare_data`) and
shared by every point; the batch axes come from the method's `Data.sweep_axes()`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import sys
import time
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle import results
from jstyle.system import memory
from jstyle.engine import optimize
from jstyle.engine import images as pixel_images
from jstyle.engine import options, pyramid
from jstyle.engine import program as program_lib
from jstyle.engine import session as session_lib
from jstyle.engine.session import Session
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.methods import gatys
from jstyle.nets.weights import VGGWeights


def layer_kinds(hp) -> tuple[str, ...]:
    """The kinds of layer list of a Params: X for each field X_layers with X_layer_weights
    (Gatys: content, style, hist)."""
    names = [f.name for f in dataclasses.fields(hp)]
    return tuple(n[: -len("_layers")] for n in names
                 if n.endswith("_layers") and n[: -len("s")] + "_weights" in names)


def on_layers(hp, layers: dict[str, tuple[str, ...]]):
    """`hp` on the given layers of each kind: its own layers keep their weights, the others
    get weight 0 (off)."""
    changes = {}
    for kind, wanted in layers.items():
        own = dict(zip(getattr(hp, f"{kind}_layers"), getattr(hp, f"{kind}_layer_weights")))
        changes[f"{kind}_layers"] = wanted
        changes[f"{kind}_layer_weights"] = tuple(float(own.get(l, 0.0)) for l in wanted)
    return dataclasses.replace(hp, **changes)


def align(points: list) -> list:
    """The points on the union of their layers (in VGG order), so that they stack.

    Raises:
      InputError: no points, or points that differ in a static choice other than layers
        (pooling, normalisation, patch size...: these cannot vary in a batch).
    """
    if not points:
        raise InputError("a sweep needs at least one point")
    for field in dataclasses.fields(points[0]):
        if field.metadata.get("static") and not field.name.endswith("_layers") and \
                len({getattr(p, field.name) for p in points}) > 1:
            raise InputError(f"the points of one sweep must share {field.name}; run one sweep "
                             f"per {field.name}")
    layers = {kind: tuple(sorted({l for p in points for l in getattr(p, f"{kind}_layers")},
                                 key=vgg.LAYERS.index)) for kind in layer_kinds(points[0])}
    return [on_layers(p, layers) for p in points]


def _stacked(points: list):
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *points)


def stack(points: list):
    """K points -> one Params whose weights are float32[K] (layer weights tuples of
    float32[K]), on the union of the points' layers (`align`)."""
    return _stacked(align(points))


def program(opts: options.RunOptions, convention, method: ModuleType = gatys
            ) -> program_lib.Program:
    """The compiled program of a batch of points: the optimiser chunk over the points' states
    and hyperparameters (batch axes from the method's `Data.sweep_axes`), and the batched loss
    terms (images, data) -> {term: float32[K]}; cached (jstyle.engine.program), so every batch
    of one shape runs one compilation."""
    return program_lib.compile_program(method.loss_terms, convention, opts,
                                       method.Data.sweep_axes())


def setup(content: np.ndarray, styles: list[np.ndarray], points: list, opts: options.RunOptions,
          weights: VGGWeights, inits: np.ndarray, method: ModuleType = gatys,
          sweep_points: list | None = None) -> program_lib.Problem:
    """One compiled program for all `points`: targets for the union of their layers, computed
    once, and a chunk vmapped over the points.

    Args:
      content, styles: float[H, W, 3] in [0, 1], any size (resized as the method's setup does).
      points: K hyperparameter sets of `method`; `opts` applies to all.
      inits: float32[K, h, w, 3], each point's starting image in 8-bit levels (any size:
        resized to the content's).
      sweep_points: the whole sweep's points (default: `points`), whose layers and largest
        weights decide the compiled terms, so that every batch of a sweep runs one program.
    Returns:
      a program_lib.Problem whose state and `terms` are batched (leading axis K); its data is the
      method's Data with stacked hyperparameters.
    """
    everyone = align(sweep_points or points)
    peak = jax.tree.map(lambda *xs: max(float(x) for x in xs), *everyone)  # a term some point
    #   uses has a positive weight here (a method may leave unused terms out of its loss)
    data, content, styles, blend = method.prepare_data(content, styles, peak, opts, weights)
    used = {kind: getattr(data.hp, f"{kind}_layers") for kind in layer_kinds(data.hp)}
    data = data._replace(hp=_stacked([on_layers(p, used) for p in points]))
    compiled = program(opts, weights.convention, method)
    starts = np.stack([pixel_images.start_image(None, opts, content, styles, np.asarray(i))
                       for i in inits])
    state = jax.vmap(lambda image: optimize.init(compiled.optimizer, image))(jnp.asarray(starts))
    return program_lib.Problem(chunk=compiled.chunk, state=state, data=data,
                               terms=compiled.terms, content=content, styles=styles, blend=blend,
                               init=starts)


local_mesh, shard = program_lib.local_mesh, program_lib.shard  # the batch over the devices


# ---------------------------------------------------------------------------------------------
# Running a sweep into a workdir: batches, this process's share of the points, resume.

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


@dataclasses.dataclass(frozen=True)
class Point:
    """One configuration of a sweep."""
    name: str  # unique; names the point's files in the workdir
    coords: dict  # the point's value on each of the sweep's axes (JSON scalars)
    hp: Any  # the objective: the method's Params
    init: str = "content"  # "content" or "noise" (the mean pixel plus init_noise x N(0, 1))
    init_noise: float = 8.0  # std of the noise init, 8-bit levels
    seed: int = 0  # the noise init's jax.random key

    def describe(self) -> dict:
        """The point as JSON: name, coordinates, hyperparameters and start."""
        return json.loads(json.dumps({
            "name": self.name, "coords": self.coords, "hyperparameters": dataclasses.asdict(
                self.hp), "init": self.init, "init_noise": self.init_noise, "seed": self.seed}))


def planned_outputs(workdir: pathlib.Path, points: list[Point]) -> list[pathlib.Path]:
    """Every file a sweep writes in `workdir` (results.py lists them)."""
    return ([workdir / n for n in ("config.json", "metrics.jsonl", "sweep.npz",
                                   "contact_sheet.png")]
            + [workdir / "images" / f"{p.name}.png" for p in points]
            + [workdir / "points" / f"{p.name}.json" for p in points])


def initial_images(points: list[Point], content: np.ndarray) -> np.ndarray:
    """Each point's starting image: float32[K, H, W, 3] in 8-bit levels; `content`
    float32[H, W, 3] in 8-bit levels."""
    return np.stack([pixel_images.initial_image(jax.random.key(p.seed), p.init, content, [],
                                          p.init_noise) for p in points]).astype(np.float32)


def memory_gib(content_shape: tuple[int, ...], styles: list[np.ndarray],
               opts: options.RunOptions, batch: int) -> float:
    """Estimated peak memory (GiB) of `batch` points optimised as one program at `opts.size`:
    the runtime once, and one point's pixel run above it (memory.pixel_run_gib) `batch` times
    over; or computing the style targets first (pyramid.style_targets_gib), if that is more."""
    h, w = image_lib.fit_edge(*content_shape[:2], opts.size)
    point = memory.pixel_run_gib(h, w, opts.optimizer, opts.lbfgs_memory, None,
                                 options.precision(opts)) - memory.BASE_GIB
    return max(memory.BASE_GIB + batch * point, pyramid.style_targets_gib(styles, opts, None, 1))


def _check(points: list[Point], opts: options.RunOptions, batch_size: int, num_styles: int,
           method: ModuleType) -> None:
    names = [p.name for p in points]
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise InputError(f"point name {bad[0]!r} is not a file name; use letters, digits and "
                         "._=+-")
    if len(set(names)) != len(names):
        raise InputError("two points share a name; give every point its own name")
    for p in points:
        if p.init not in ("content", "noise"):
            raise InputError(f"point {p.name}: init {p.init!r} cannot vary in a sweep; use "
                             "content or noise")
        method.validate(p.hp, opts, num_styles)
    if batch_size < 1:
        raise InputError(f"--batch_size={batch_size} must be >= 1; give a positive whole "
                         "number")


def _check_not_another_sweeps(workdir: pathlib.Path, todo: list[Point], made: dict) -> None:
    """Raises InputError when a point to compute is in `workdir` already, finished but made
    another way (other options, inputs or hyperparameters): computing it would replace
    another sweep's result."""
    for point in todo:
        record = results.finished_point(workdir, point.name)
        if record is not None:
            keys = results.differs(record, {"point": point.describe(), **made})
            raise InputError(f"--workdir={workdir} holds point {point.name} of another sweep "
                             f"(it differs in {', '.join(keys)}); give a new --workdir, or "
                             "remove its points/ and images/ to compute them again")


def run(workdir: str | pathlib.Path, content: np.ndarray, styles: list[np.ndarray],
        points: list[Point], opts: options.RunOptions, weights: VGGWeights, *,
        axes: dict[str, list], panels: list[dict] | None = None, batch_size: int = 8,
        extra: dict | None = None, session: Session | None = None,
        method: ModuleType = gatys) -> None:
    """Runs the sweep into `workdir`, resuming: a point whose files are complete and were made
    the same way is kept; the others are computed, `batch_size` at a time (rounded up to a
    multiple of the local devices) as one program sharded over this process's devices.

    Under jax.distributed every process takes every process_count-th point, writes only those,
    and process 0 writes the merged files once all are done (results.write_sweep).

    Args:
      workdir: created if missing; see results.py for the files.
      content, styles: float[H, W, 3] in [0, 1], any size (resized by `opts`).
      points: the sweep's points, in the order tables list them.
      opts: how every point runs (size, steps, optimiser, print_every = the logging interval),
        coarse to fine as a single run is (options.pyramid): every level of a batch is one
        program, started from the previous level's images.
      axes: {axis name: its values in order}, for sweep.npz and the contact sheet.
      panels: contact sheet panels (results.write_sweep); default: one per combination of
        the axes after the first two.
      batch_size: points per compiled program; lower it when a batch does not fit in memory.
      extra: more JSON for config.json (what the experiment is, where its images came from).
      session: the run's session (progress, the memory check, each point's record); default:
        one that shows progress.
      method: the method module whose Params the points hold (its `prepare_data`,
        `loss_terms`, `Data.sweep_axes` and `validate`).
    Raises:
      InputError: invalid points or options, or a batch that would need more memory than is
        available (checked before anything is written or allocated).
    """
    _check(points, opts, batch_size, len(styles), method)
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir={workdir} is a file; give a folder (made if missing)")
    made = session_lib.made(method.__name__.rsplit(".", 1)[-1], None, opts, weights,
                            [content, *styles])
    session = session or Session(method="sweep")
    aligned = dict(zip([p.name for p in points], align([p.hp for p in points])))
    mine = points[jax.process_index()::jax.process_count()]
    todo = [p for p in mine if results.read_point(workdir, {"point": p.describe(), **made})
            is None]
    _check_not_another_sweeps(workdir, todo, made)
    devices = jax.local_device_count()
    size = -(-min(batch_size, max(len(todo), 1)) // devices) * devices
    # the devices of a CPU share its memory; an accelerator holds its share of the batch
    held = size if jax.default_backend() == "cpu" else size // devices
    session.begin(made, total=len(todo) * sum(n for _, n in options.pyramid(opts)),
                  resumable=False)
    session.require(memory_gib(content.shape, styles, opts, held), "lower --batch_size or --size")
    (workdir / "points").mkdir(parents=True, exist_ok=True)
    (workdir / "images").mkdir(exist_ok=True)
    if jax.process_index() == 0:
        results.write_json(workdir / "config.json", {
            **(extra or {}), "axes": axes, "panels": panels, **made,
            "points": [p.describe() for p in points]})
    if session.progress:
        print(f"sweep: process {jax.process_index()} of {jax.process_count()}: {len(todo)} of "
              f"its {len(mine)} points to compute", file=sys.stderr, flush=True)
    work_content, work_styles = pixel_images.prepare_colors(content, styles, opts)
    first = dataclasses.replace(opts, size=options.pyramid(opts)[0][0])
    start = options.resize_inputs(work_content, work_styles, first)[0]
    shared = Shared(workdir, content, work_content, work_styles, start, aligned, opts, weights,
                    method, size, session, len(todo))
    for start in range(0, len(todo), size):
        compute(shared, todo[start:start + size], start)
    session.bar.close()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("jstyle sweep: every point written")
    if jax.process_index() == 0:
        results.write_sweep(workdir)


class Shared(NamedTuple):
    """What every batch of a sweep shares."""
    workdir: pathlib.Path
    content: np.ndarray  # float32[H, W, 3] in [0, 1], the original (colour control's)
    work_content: np.ndarray  # after colour control
    work_styles: list
    start: np.ndarray  # the content at the first level's size, 8-bit levels (the points'
    #   starts)
    aligned: dict  # point name -> its Params on the sweep's layers
    opts: Any
    weights: Any
    method: ModuleType
    size: int  # points per compiled program
    session: Session  # began with what made the sweep (options, weights, inputs)
    total: int  # points to compute


def compute(shared: Shared, batch: list[Point], done: int) -> None:
    """Optimises one batch of points (`done` points of the sweep before it), level by level,
    and writes each point's image and record."""
    (workdir, content, work_content, work_styles, start, aligned, opts, weights, method, size,
     session, total) = shared
    started = time.perf_counter()
    padded = batch + [batch[-1]] * (size - len(batch))  # one shape: no recompilation
    points = [aligned[p.name] for p in padded]
    levels = options.pyramid(opts)
    per_point = sum(n for _, n in levels)
    histories: list[list[dict]] = [[] for _ in batch]
    images, taken = initial_images(padded, start), np.zeros(len(padded), int)
    for level, (level_size, steps) in enumerate(levels):
        level_opts = dataclasses.replace(opts, size=level_size, steps=steps)
        problem = shard(setup(work_content, work_styles, points, level_opts, weights, images,
                              method, list(aligned.values())))
        offset = sum(n for _, n in levels[:level])

        def log(images: jax.Array, steps: np.ndarray) -> None:
            terms = problem.terms(images, problem.data)
            for k, history in enumerate(histories):
                if not history or (history[-1]["level"], history[-1]["step"]) != (
                        level, offset + int(steps[k])):
                    history.append({"level": level, "step": offset + int(steps[k]),
                                    **{t: float(v[k]) for t, v in terms.items()}})

        def on_stop(state: optimize.LoopState) -> None:
            steps = np.asarray(state.step)
            log(optimize.last_good(state), steps)
            session.update(done * per_point + len(batch) * (offset + int(steps.max())),
                           f"points {done + len(batch)}/{total}")

        log(jnp.asarray(problem.init), np.zeros(len(padded), int))
        state = optimize.run(problem.chunk, problem.state, problem.data,
                             optimize.boundaries(steps, opts.print_every), on_stop)
        images = np.asarray(optimize.last_good(state))
        taken += np.asarray(state.step)
    seconds = (time.perf_counter() - started) / len(batch)
    for k, point in enumerate(batch):
        stopped = ("nan" if bool(state.failed[k]) else
                   "converged" if bool(state.converged[k]) else "steps")
        results.write_point(workdir, session.record(
            point=point.describe(), history=histories[k],
            final_loss={t: v for t, v in histories[k][-1].items() if t not in ("level", "step")},
            levels=[{"size": s, "steps": n} for s, n in levels], steps=int(taken[k]),
            stopped=stopped, seconds=seconds, batch=len(padded), process=jax.process_index()),
            pixel_images.finish_colors(images[k] / 255.0, content, opts))


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None, auto: bool = False) -> None:
    """Joins a multi-process run (jax.distributed.initialize) when asked: with an explicit
    coordinator address ("host:port"), number of processes and this process's id, or, with
    `auto`, as JAX detects them (Cloud TPU, SLURM, Open MPI). Otherwise a no-op."""
    if coordinator_address is None and not auto:
        return
    if coordinator_address is not None and (num_processes is None or process_id is None):
        raise InputError("--coordinator_address needs --num_processes and --process_id")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
