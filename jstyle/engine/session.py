"""The run session: what every method's run shares, so that a method's `run` is its algorithm.

The caller (the command, an experiment, a sweep, a library user) makes a Session and hands it
to a method's `run(key, inputs, hp, opts, weights, *, session=...)`. The session owns:

  the record       one schema: what made the run (`begin`: method, hyperparameters, options,
                   input digests, weights) and how it went (`result`: memory estimate,
                   available and peak, seconds, stop reason, device, backend, versions)
  the checkpoint   one format (jstyle.engine.checkpoint) for every method: a state pytree,
                   named arrays and the record, with one compatibility check; `begin` returns
                   the position a matching checkpoint stood at, `save` keeps one
  progress         a bar or log lines (`update`), a loss history (`optimise`)
  memory           `require`: refused before anything is allocated, recorded after
  interruptions    Ctrl-C and SIGTERM become `Stopped` naming where the run stood
  outputs          where each file goes: the output, named images, snapshots
                   (OUTPUT_<step>.png), images kept mid-run (a clip's frames), the checkpoint;
                   `planned` lists them before the run, `write` writes the result and its record
                   together

A Session without an output keeps nothing on disk (a library call or a test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import pathlib
import platform
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle import results
from jstyle.engine import checkpoint, optimize
from jstyle.engine.options import RunOptions
from jstyle.errors import InputError
from jstyle.system import files, interrupt, memory
from jstyle.system.progress import Progress

MAY_CHANGE_ON_RESUME = ("steps", "pyramid_steps", "print_every", "save_every")  # options a
#   resumed run may change: it continues to the new step count, reporting and saving as now asked
PACKAGES = ("jstyle", "jax", "jaxlib", "optax", "flax", "numpy", "pillow", "absl-py",
            "scikit-image")


class Result(NamedTuple):
    """What a method's run returns."""
    images: dict[str, np.ndarray]  # name -> float32[H, W, 3] in [0, 1]; "output" is the
    #   result (the last good image on failure); a method may add others (e.g. "b")
    record: dict  # how it was made: options, losses, steps, seconds, stop reason
    history: list[dict]  # one entry per progress point: step and each loss term

    @property
    def image(self) -> np.ndarray:
        """The main output, images["output"]."""
        return self.images["output"]


class Progressed(NamedTuple):
    """What one optimisation reports back."""
    state: optimize.LoopState
    image: np.ndarray  # float32[H, W, 3] in [0, 255], the last good image


class Stopped(KeyboardInterrupt):
    """A run interrupted (Ctrl-C, SIGTERM) at `position` ("step 40", "frame 2 of pass 1"),
    its state saved to `checkpoint` (None: nothing was saved)."""

    def __init__(self, position: str, checkpoint: pathlib.Path | None):
        super().__init__(position)
        self.position, self.checkpoint = position, checkpoint


def floats(terms: dict) -> dict[str, float]:
    """{term: float32[]} -> {term: float}."""
    return {k: float(v) for k, v in terms.items()}


def stop_reason(state: optimize.LoopState) -> str:
    """Why an optimisation ended: "nan", "converged" or "steps"."""
    return "nan" if bool(state.failed) else "converged" if bool(state.converged) else "steps"


@functools.lru_cache(maxsize=1)  # read once a process: a sweep records it for every point
def versions() -> dict[str, str]:
    """Python, the platform and the versions of jstyle's packages, for a record."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def made(method: str, hp, options, weights, inputs: list[np.ndarray], **extra) -> dict:
    """What makes a run, the record's first part (a checkpoint must match it): the method, its
    hyperparameters (None: they vary, as in a sweep), the options it uses (a RunOptions, or
    {name: value} of those it reads), the weights' digest (None: no VGG), the digest of every
    input array, and `extra` (levels, a clip's flow source, a model)."""
    found = {"method": method}
    if hp is not None:
        found["hyperparameters"] = dataclasses.asdict(hp)
    found["options"] = dict(options) if isinstance(options, dict) else \
        dataclasses.asdict(options)
    if weights is not None:
        found["weights"] = weights.digest
    return {**found, "inputs": results.array_digest(*inputs), **extra}


def describe(position: dict) -> str:
    """Where a checkpoint stood, in words: "step 40", or "its last checkpoint"."""
    return f"step {position['step']}" if "step" in position else "its last checkpoint"


def named(output: pathlib.Path, name: str, folder: bool = False) -> pathlib.Path:
    """Where the image `name` of a result goes: OUTPUT itself for "output", else
    OUTPUT_<name>; in a `folder` OUTPUT (a clip's), OUTPUT/<name>.png."""
    if folder:
        return output / f"{name}.png"
    return output if name == "output" else output.with_name(f"{output.stem}_{name}"
                                                              f"{output.suffix}")


def snapshot_path(output: pathlib.Path, step: int) -> pathlib.Path:
    """OUTPUT_<step>: a snapshot at global step `step`."""
    return output.with_name(f"{output.stem}_{step}{output.suffix}")


def checkpoint_path(output: pathlib.Path, method: str, folder: bool = False) -> pathlib.Path:
    """OUTPUT.ckpt.npz beside an image; OUTPUT/<method>.ckpt.npz in a folder."""
    return output / f"{method}.ckpt.npz" if folder else \
        output.with_name(f"{output.stem}.ckpt.npz")


def record_path(output: pathlib.Path, method: str, folder: bool = False) -> pathlib.Path:
    """OUTPUT.json beside an image; OUTPUT/<method>.json in a folder."""
    return output / f"{method}.json" if folder else output.with_suffix(".json")


def snapshot_steps(levels: list[int], save_every: int) -> list[int]:
    """The global steps a run of `levels` (steps per level or pass, in order) snapshots at:
    every `save_every` steps within a level, counted across levels, a level's end excepted."""
    found, offset = [], 0
    for steps in levels:
        if save_every:
            found += [offset + s for s in range(save_every, steps, save_every)]
        offset += steps
    return found


def planned(output: pathlib.Path, method: str, images: tuple[str, ...], *,
            resumable: bool, snapshots: list[int] = ()) -> list[pathlib.Path]:
    """Every file a run writes for OUTPUT: its images, its record, and for a method that keeps
    checkpoints the checkpoint and the snapshots."""
    paths = [named(output, n) for n in images] + [record_path(output, method)]
    if resumable:
        paths.append(checkpoint_path(output, method))
    return paths + [snapshot_path(output, s) for s in snapshots]


@dataclasses.dataclass
class Session:
    """One run's bookkeeping (the module docstring). Made by the caller, used by one method.

    Attributes:
      output: the output image (or folder); None keeps nothing on disk.
      folder: the output is a folder (a clip's): images go in it as <name>.png.
      method: the method's name (the checkpoint's and a folder's record name).
      fmt: the image format of OUTPUT (Pillow's name).
      progress: show a bar or log lines.
      about: what the caller adds to the record (the command line, input paths).
      reads: (flag, path) of every file the run reads: no output may replace one.
    """
    output: pathlib.Path | None = None
    folder: bool = False
    method: str = "run"
    fmt: str = "PNG"
    progress: bool = True
    about: dict = dataclasses.field(default_factory=dict)
    reads: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.made: dict = {}
        self.history: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.memory_entry: dict | None = None
        self.started = time.perf_counter()
        self.resumable = True
        self.saved_at: str | None = None  # where the last checkpoint saved stood
        self.bar = Progress(0, self.method, enabled=False)

    # --- where things go -------------------------------------------------------------------

    @property
    def checkpoint(self) -> pathlib.Path | None:
        """The run's checkpoint file (None without an output, or for a method that keeps
        none)."""
        if self.output is None or not self.resumable:
            return None
        return checkpoint_path(self.output, self.method, self.folder)

    # --- the run's course ------------------------------------------------------------------

    def begin(self, made: dict, *, total: int, unit: str = "step",
              may_change: tuple[str, ...] = MAY_CHANGE_ON_RESUME, resumable: bool = True
              ) -> dict | None:
        """Starts the record with `made` (what makes this run: method, hyperparameters,
        options, input digests, weights) and a progress bar of `total` units; returns where a
        checkpoint of this run stood (its `position`), or None to start afresh.

        A method that keeps no checkpoints says `resumable` False: the session then neither
        reads nor writes one.

        Raises:
          InputError: a checkpoint that cannot be read or that another run made (differing in
            more than the options `may_change`); it is kept.
        """
        self.made = checkpoint.as_json(made)
        self.resumable = resumable
        position = None
        path = self.checkpoint
        if path is not None and path.exists():
            saved = checkpoint.read(path)
            checkpoint.check_made(path, saved, self.made, may_change)
            self.history = list(saved.record.get("history", []))
            self.arrays = saved.arrays
            position = saved.record.get("position")
            if not position:
                raise InputError(f"{path} holds no position to resume from; it was kept: move "
                                 "it away to start over")
        self.bar = Progress(total, self.made.get("method", self.method),
                            enabled=self.progress and total > 0, unit=unit)
        return position

    def within(self, position: dict | None, total: int) -> None:
        """InputError when the checkpoint's `position` is past the `total` steps now asked."""
        if position and position.get("step", 0) > total:
            raise InputError(f"the checkpoint {self.checkpoint} is at step {position['step']}, "
                             f"beyond the {total} steps asked in all; it was kept: ask for at "
                             f"least {position['step']} steps in all to resume")

    def require(self, gib: float, fixes: str) -> None:
        """Refuses a run whose estimate (GiB) exceeds the memory available, naming `fixes`
        (memory.require); the entry goes into the record with the peak measured."""
        self.memory_entry = memory.require(gib, fixes)

    def update(self, done: int, text: str = "") -> None:
        """Progress: `done` units of the total, and a note; a lost Ctrl-C or SIGTERM is
        raised here (jstyle.system.interrupt.check)."""
        interrupt.check()
        self.bar.update(done, text)

    def save(self, position: dict, state=None, arrays: dict[str, np.ndarray] | None = None
             ) -> None:
        """Keeps a checkpoint: the run stands at `position` (JSON), with an optimisation's
        `state` (any pytree) and named `arrays`. Nothing without an output."""
        if self.checkpoint is not None:
            checkpoint.save(self.checkpoint, state, {
                "made": self.made, "position": position, "history": self.history}, arrays)
            self.saved_at = describe(position)

    def restore(self, like):
        """The state of the checkpoint, shaped as `like`.

        Raises:
          InputError: its arrays have other shapes (it is kept).
        """
        state = checkpoint.restore(self.checkpoint, like)
        if state is None:
            raise InputError(f"{self.checkpoint} does not fit this run (its arrays have other "
                             "shapes); it was kept: move it away to start over")
        return state

    def stopped(self, position: str, saved: bool = True) -> Stopped:
        """The exception that ends an interrupted run at `position`, naming the checkpoint
        if `saved` and one is on disk."""
        interrupt.answered()
        path = self.checkpoint
        return Stopped(position, path if saved and path is not None and path.exists() else None)

    @contextlib.contextmanager
    def running(self):
        """Ctrl-C or SIGTERM anywhere in a method's run (a level's setup, a patch search)
        ends it as `Stopped`, naming the last checkpoint saved, if any."""
        try:
            yield self
        except Stopped:
            raise
        except KeyboardInterrupt:
            raise self.stopped(self.saved_at or "its last checkpoint") from None

    def optimise(self, problem, steps: int, opts: RunOptions, *, level: int = 0,
                 offset: int = 0, position: dict | None = None, resume: bool = False,
                 finish: Callable[[np.ndarray], np.ndarray] = lambda x: x,
                 arrays: dict[str, np.ndarray] | None = None, report: bool = True
                 ) -> Progressed:
        """Runs one problem (jstyle.engine.program.Problem) for `steps` steps: progress every
        `opts.print_every` (into the history; on the bar if `report`), snapshots and
        checkpoints every `opts.save_every`, a checkpoint of the last finished chunk when
        interrupted.

        Args:
          level, offset: the level (pass) and the steps taken before it: steps count across
            levels in the history, snapshots and progress.
          position: where the run stands, for the checkpoint (the level and global step are
            added).
          resume: continue from the checkpoint's state.
          finish: output image in [0, 1] -> what a snapshot shows (colour control, a crop
            put back).
          arrays: what the checkpoint carries besides the state (an earlier pass's image).
        Raises:
          Stopped: Ctrl-C or SIGTERM; the state was saved to the checkpoint.
        """
        state, data = problem.state, problem.data
        where = lambda s: {**(position or {}), "level": level, "step": offset + int(s.step)}
        if resume:
            state = self.restore(state)
            if report:
                self.update(offset + int(state.step), "resumed")

        def log(s: optimize.LoopState) -> np.ndarray:
            """Appends the state's loss terms to the history; returns its image (levels)."""
            step = offset + int(s.step)
            out = np.asarray(optimize.last_good(s))
            terms = floats(problem.terms(jnp.asarray(out), data))
            self.history.append({"step": step, "level": level, **terms})
            if report:
                self.update(step, " ".join(f"{k}={v:.4g}" for k, v in terms.items()))
            return out

        def on_stop(s: optimize.LoopState) -> None:
            step = int(s.step)
            if (opts.print_every and step % opts.print_every == 0) or step >= steps or \
                    bool(s.converged | s.failed):  # a report, not at a snapshot's stop
                log(s)
            if opts.save_every and step % opts.save_every == 0 and step < steps:
                self._snapshot(offset + step,
                               finish(np.asarray(optimize.last_good(s)) / 255.0))
                self.save(where(s), s, arrays)

        stops = optimize.boundaries(steps, opts.print_every, opts.save_every)
        try:
            state = optimize.run(problem.chunk, state, data, stops, on_stop,
                                 # a tiled step takes minutes: answer Ctrl-C after each
                                 1 if opts.tile > 1 else optimize.INTERRUPT_EVERY)
        except optimize.Interrupted as e:
            if self.checkpoint is None:
                raise self.stopped(f"step {offset + int(e.state.step)}", saved=False) from None
            if not self.history or self.history[-1]["step"] < offset + int(e.state.step):
                log(e.state)  # between progress points: the history gets this step too
            self.save(where(e.state), e.state, arrays)
            raise self.stopped(f"step {offset + int(e.state.step)}") from None
        return Progressed(state, np.asarray(optimize.last_good(state)))

    def _snapshot(self, step: int, image: np.ndarray) -> None:
        if self.output is not None and not self.folder:
            image_lib.save(snapshot_path(self.output, step), image, self.fmt)

    # --- images kept as they finish (a clip's frames) --------------------------------------

    def keep(self, name: str, image: np.ndarray, record: dict) -> None:
        """Writes the image `name` (float[H, W, 3] in [0, 1]) and its record at once (a frame
        finished while the run goes on); nothing without an output."""
        if self.output is None:
            return
        path = named(self.output, name, self.folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_together({path: image_lib.encode(image), path.with_suffix(".json"):
                              json.dumps({**self.about, "output": str(path), **record},
                                         indent=2).encode()})

    def kept(self, name: str) -> np.ndarray:
        """The image `keep` wrote for `name`, float32[H, W, 3] in [0, 1] (a resumed run)."""
        return image_lib.load(named(self.output, name, self.folder))

    # --- the end ---------------------------------------------------------------------------

    def record(self, **fields) -> dict:
        """The record so far: what made the run, `fields`, memory (estimate, available, peak),
        seconds since the session began (unless `fields` gives them), device, backend and
        versions."""
        record = {**self.made, "seconds": time.perf_counter() - self.started, **fields}
        if self.memory_entry is not None:
            record["memory"] = memory.measured(self.memory_entry)
        record.update({"backend": jax.default_backend(),
                       "device": str(jax.devices()[0].device_kind), "versions": dict(versions())})
        return record

    def result(self, images: dict[str, np.ndarray], **fields) -> Result:
        """The run's Result: `images`, and the record (`record`) with the loss history."""
        self.bar.close()
        return Result(images=images, record=self.record(**fields), history=self.history)

    def write(self, result: Result, extra: dict | None = None, *, images: bool = True,
              also: dict[pathlib.Path, bytes] | None = None) -> dict[str, pathlib.Path]:
        """Writes each image of `result` (OUTPUT for "output", OUTPUT_<name> for the others;
        not with `images` False: a clip's frames, kept as they finished), the files `also`
        (a clip's movie) and the record, all or none, none over a file the run read; then
        drops the checkpoint, which the finished result replaces. Returns {name: path}."""
        interrupt.check()  # an interrupted run writes no result
        paths = {name: named(self.output, name, self.folder) for name in result.images}
        files.check_outputs(paths.values(), self.reads)
        blobs = {paths[n]: image_lib.encode(img, self.fmt) for n, img in result.images.items()
                 if images}
        blobs.update(also or {})
        record = {**self.about, "output": str(self.output), **result.record,
                  "history": result.history, "images": {n: str(p) for n, p in paths.items()},
                  **(extra or {})}
        blobs[record_path(self.output, self.method, self.folder)] = json.dumps(
            record, indent=2, default=str).encode()
        files.write_together(blobs)
        if self.checkpoint is not None:
            self.checkpoint.unlink(missing_ok=True)
        return paths
