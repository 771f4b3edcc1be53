"""Training a feed-forward style network (Johnson, Alahi & Fei-Fei 2016) for one style.

The perceptual loss compares the network's output O for a photo crop C on jstyle's VGG-19,
in jstyle's normalisation (features divided by each layer's mean activation, G = F^T F / (H W),
halved mean squared errors, as the Gatys objective):

  L = alpha * L_c(O, C) + beta * sum_l w_l L_s(G_l(O), G_l(S)) + w_tv * L_tv(O)

with content at relu2_2 (pytorch/examples' fast_neural_style; preset "pytorch-examples") or
relu3_3 (the authors' code; preset "johnson") and style at relu1_2, relu2_2, relu3_3, relu4_3.
Adam, batches of random crops from a folder of photos. Every batch is a pure function of the
run's key and the step, so a resumed run sees exactly the batches an uninterrupted one would.

A training keeps the pixel methods' rules: everything is checked before anything is written
(`preflight`), an earlier run's files are never replaced without --resume, --resume needs a
checkpoint at or below --steps, an interruption keeps the last finished step, and a step whose
loss or parameters are not finite ends the run without exporting a model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import queue
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jstyle import image as image_lib
from jstyle import results
from jstyle.system import interrupt
from jstyle.ops import losses
from jstyle.system import memory
from jstyle.nets import vgg
from jstyle.errors import EnvironmentFault, InputError, JStyleError
from jstyle.params import field
from jstyle.system.progress import Progress
from jstyle.methods.fast.network import TransformNet
from jstyle.nets.weights import VGGWeights

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OUTPUTS = ("config.json", "metrics.jsonl", "model.msgpack")  # what `train` writes in its workdir,
#   besides checkpoints/
EARLIER = ("metrics.jsonl", "model.msgpack")  # with checkpoints: an earlier run's work
PREFETCH = 4  # batches the data thread prepares ahead
# Memory of a training step, calibrated on the 2-core development machine: peak resident memory
# of two steps on batches of 2 crops is 1.44, 2.04 and 3.05 GiB at 128, 256 and 384 px (width 1)
# and 1.91 GiB at 256 px (width 0.25); the line below is within 2% of each.
BASE_GIB = 1.25  # the runtime, the compiled step, VGG-19's weights and the style's targets
PERCEPTUAL_GIB_PER_MPX = 4.8  # VGG-19 to relu4_3 on the outputs (forward and backward) and the
#   photos (forward), per megapixel of a batch (crops times their pixels)
NETWORK_GIB_PER_MPX = 1.4  # the transform network's activations and gradients, at width 1


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """The training objective and schedule (the flagged fields are `jstyle train`'s flags)."""
    content_layers: tuple[str, ...] = field(("relu2_2",), "Content layers.", flag=False)
    style_layers: tuple[str, ...] = field(("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                                          "Style layers.", flag=False)
    style_layer_weights: tuple[float, ...] = field((1.0, 1.0, 1.0, 1.0), "Weight per style "
                                                   "layer.", flag=False)
    content_weight: float = field(1.0, "Content weight alpha.")
    style_weight: float = field(10.0, "Gram style weight beta.")
    tv_weight: float = field(1e-5, "Total-variation weight, on the output in 8-bit levels.")
    width: float = field(1.0, "The network's width multiplier (0.5 is about 4x faster).")
    learning_rate: float = field(1e-3, "Adam's learning rate.")
    batch_size: int = field(4, "Photos per step.")
    size: int = field(256, "Crop edge, pixels.")
    style_size: int = field(256, "The style image's longer edge, pixels.", flag=False)


PRESETS = {
    "pytorch-examples": TrainParams(),
    "johnson": TrainParams(content_layers=("relu3_3",)),
}


def estimate_gib(hp: TrainParams) -> float:
    """Estimated peak memory (GiB) of training with `hp`: the step on a batch of `batch_size`
    crops of `size` px, and the batches the data thread holds."""
    mpx = hp.batch_size * hp.size * hp.size / 1e6
    held = (PREFETCH + 2) * hp.batch_size * memory.image_gib(hp.size, hp.size)
    return BASE_GIB + mpx * (PERCEPTUAL_GIB_PER_MPX + NETWORK_GIB_PER_MPX * hp.width) + held


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    """The steps of the finished checkpoints in `workdir`/checkpoints, ascending (orbax names
    each by its step once it is complete)."""
    folder = pathlib.Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


class Plan(NamedTuple):
    """What `preflight` found: the photos, the checkpoint step a resumed run continues from
    (None: a fresh run) and the record's memory entry (memory.require)."""
    paths: list[pathlib.Path]
    resume_step: int | None
    memory: dict


def preflight(data_dir: str | pathlib.Path, workdir: str | pathlib.Path, hp: TrainParams, *,
              steps: int, resume: bool) -> Plan:
    """Every check a training makes before it loads or writes anything; writes nothing.

    Raises:
      InputError: the workdir is a file; it holds an earlier run and `resume` is off; `resume`
        finds no checkpoint, or one past `steps`; a bad photo folder; the run needs more memory
        than is available.
    """
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir={workdir} is a file; give a folder (made if missing)")
    paths = photo_paths(data_dir)
    saved = checkpoint_steps(workdir)
    earlier = [n for n in EARLIER if (workdir / n).exists()]
    found = ", ".join((["checkpoints at step " + ", ".join(map(str, saved))] if saved else [])
                      + earlier)
    if not resume and found:
        raise InputError(f"--workdir={workdir} holds an earlier training ({found}); rerun with "
                         "--resume to continue it, or give a new --workdir, or remove it to "
                         "start over")
    if resume and not saved:
        raise InputError(f"--resume: --workdir={workdir} holds no checkpoint to continue from; "
                         + (f"it holds {found} of an earlier training: give a new --workdir, "
                            "or remove it to start over" if found else
                            "run without --resume to start"))
    if resume and saved[-1] > steps:
        raise InputError(f"--resume: the checkpoint in --workdir={workdir} is at step "
                         f"{saved[-1]}, past --steps={steps}; give --steps={saved[-1]} or more "
                         "to continue it, or a new --workdir")
    entry = memory.require(estimate_gib(hp), "lower --size or --batch_size")
    return Plan(paths, saved[-1] if resume else None, entry)


def photo_paths(data_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """The JPEG and PNG files under `data_dir` (recursively), sorted.

    Raises:
      InputError: the folder is missing or holds no such file.
    """
    folder = pathlib.Path(data_dir)
    if not folder.is_dir():
        raise InputError(f"--data_dir={folder} is not a folder; give a folder of JPEG or PNG "
                         "photos (e.g. COCO train2014)")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"--data_dir={folder} holds no .jpg or .png files; give a folder of "
                         "photos (e.g. COCO train2014)")
    return paths


class Batches:
    """Batch `step` of random crops, float32[B, size, size, 3] in [0, 1], a pure function of
    (key, step); a background thread prepares the next ones while the device trains.

    A photo is resized so that its shorter edge is `size`, then cropped at random. Unreadable
    files are skipped (the next file in a fixed order is used) and counted in `skipped`.
    """

    def __init__(self, paths: list[pathlib.Path], key: jax.Array, batch_size: int, size: int,
                 first_step: int = 0, prefetch: int = PREFETCH):
        self.paths, self.key, self.batch_size, self.size = paths, key, batch_size, size
        self.skipped: set[pathlib.Path] = set()
        self.queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, args=(first_step,), daemon=True)
        self.thread.start()

    def _crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            if path in self.skipped:
                continue
            try:
                img = image_lib.load(path)
            except InputError:
                self.skipped.add(path)
                continue
            h, w = img.shape[:2]
            scale = self.size / min(h, w)
            h, w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
            img = image_lib.resize(img, h, w)
            y, x = rng.integers(0, h - self.size + 1), rng.integers(0, w - self.size + 1)
            return img[y:y + self.size, x:x + self.size]
        raise InputError("no photo in --data_dir could be read; give readable JPEG or PNG files")

    def make(self, step: int) -> np.ndarray:
        """Batch `step`, computed here (the thread calls this too)."""
        seed = np.asarray(jax.random.key_data(jax.random.fold_in(self.key, step)))
        rng = np.random.default_rng(seed.astype(np.uint32))
        picks = rng.integers(0, len(self.paths), self.batch_size)
        return np.stack([self._crop(int(i), rng) for i in picks]).astype(np.float32)

    def _fill(self, step: int) -> None:
        while not self.stop.is_set():
            try:
                batch = self.make(step)
            except BaseException as e:  # noqa: BLE001 (the main thread waits for every batch)
                self._put((step, e))
                return  # the main thread raises it
            self._put((step, batch))
            step += 1

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, stop: threading.Event | None = None) -> tuple[int, np.ndarray] | None:
        """The next (step, batch), or None once `stop` is set (checked while waiting, so that
        Ctrl-C and SIGTERM end the wait).

        Raises:
          InputError: no photo could be read, or the thread ran out of memory.
          EnvironmentFault: the thread could not read the disk.
          RuntimeError: the thread ended without a batch or a reason.
        """
        while stop is None or not stop.is_set():
            try:
                step, batch = self.queue.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise RuntimeError("the batch thread ended without a reason") from None
                continue
            if isinstance(batch, BaseException):
                raise self._failure(batch)
            return step, batch
        return None

    def _failure(self, error: BaseException) -> BaseException:
        """What the main thread raises for an exception of the batch thread."""
        if isinstance(error, JStyleError):
            return error
        if isinstance(error, MemoryError):
            return InputError(f"the memory ran out while preparing a batch of {self.batch_size} "
                              f"crops of {self.size} px; lower --size or --batch_size")
        if isinstance(error, OSError):
            return EnvironmentFault(f"cannot read the photos in --data_dir ({error}); check the "
                                    "disk and the permissions, then run again")
        return error  # a fault of jstyle's: its own traceback

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class Loss(NamedTuple):
    """What the loss compares against, computed once."""
    vgg_params: dict
    scales: dict  # layer -> float32[], each layer's mean activation
    style_grams: dict  # layer -> float32[C, C]


def prepare_loss(style: np.ndarray, hp: TrainParams, weights: VGGWeights) -> Loss:
    """The style's Gram matrices at `hp.style_size`; style float[H, W, 3] in [0, 1]."""
    vgg_params = vgg.prepare(weights.params)
    layers = tuple(dict.fromkeys(hp.content_layers + hp.style_layers))
    scales = vgg.layer_scales(weights.filter_means, layers)
    target = image_lib.to_levels(image_lib.resize_to_edge(style, hp.style_size))
    feats = _features(vgg_params, scales, jnp.asarray(target), hp.style_layers,
                      weights.convention)
    return Loss(vgg_params, scales, {l: losses.gram_matrix(feats[l]) for l in hp.style_layers})


def _features(vgg_params, scales, levels, layers, convention) -> dict:
    return vgg.image_features(vgg_params, levels, layers, convention, scales)


def loss_terms(outputs: jax.Array, photos: jax.Array, loss: Loss, hp: TrainParams,
               convention) -> dict[str, jax.Array]:
    """The perceptual loss of a batch, averaged over it: {"content", "style", "tv", "total"}.
    outputs, photos: float32[B, H, W, 3] in [0, 1]."""
    layers = tuple(dict.fromkeys(hp.content_layers + hp.style_layers))

    def one(output, photo):
        out = _features(loss.vgg_params, loss.scales, output * 255.0, layers, convention)
        ref = _features(loss.vgg_params, loss.scales, photo * 255.0, hp.content_layers,
                        convention)
        content = sum(losses.content_loss(out[l], ref[l]) for l in hp.content_layers)
        style = sum(w * losses.style_loss(losses.gram_matrix(out[l]), loss.style_grams[l])
                    for l, w in zip(hp.style_layers, hp.style_layer_weights))
        return {"content": hp.content_weight * content, "style": hp.style_weight * style,
                "tv": hp.tv_weight * losses.total_variation(output * 255.0)}

    terms = jax.tree.map(jnp.mean, jax.vmap(one)(outputs, photos))
    terms["total"] = terms["content"] + terms["style"] + terms["tv"]
    return terms


class TrainState(NamedTuple):
    """Everything a resumed run needs; a pytree (saved by orbax)."""
    params: Any  # the network's parameters, a pure dict of float32 arrays
    opt_state: Any  # Adam's state
    step: jax.Array  # int32[], steps taken


def new_network(hp: TrainParams, key: jax.Array) -> TransformNet:
    return TransformNet(width=hp.width, rngs=nnx.Rngs(params=key))


def init_state(hp: TrainParams, key: jax.Array) -> tuple[nnx.GraphDef, TrainState]:
    """A fresh network (initialised from `key`) and its optimiser state."""
    graphdef, params = nnx.split(new_network(hp, key))
    params = nnx.to_pure_dict(params)
    return graphdef, TrainState(params, optax.adam(hp.learning_rate).init(params),
                                jnp.int32(0))


def make_step(graphdef: nnx.GraphDef, loss: Loss, hp: TrainParams, convention):
    """Jitted (state, photos float32[B, H, W, 3] in [0, 1]) -> (state, loss terms). A step
    whose loss or new parameters are not finite returns the state it was given, its step
    count unchanged: the caller sees that it did not advance (a diverged training)."""
    optimizer = optax.adam(hp.learning_rate)

    def objective(params, photos):
        net = nnx.merge(graphdef, params)
        terms = loss_terms(net(photos), photos, loss, hp, convention)
        return terms["total"], terms

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state: TrainState, photos: jax.Array):
        grads, terms = jax.grad(objective, has_aux=True)(state.params, photos)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1)
        finite = jnp.isfinite(terms["total"]) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new.params)]))
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state), terms

    return step


# ---------------------------------------------------------------------------------------------
# The loop: checkpoints (orbax), metrics, resume, export.

class Stopped(KeyboardInterrupt):
    """A training interrupted (Ctrl-C, SIGTERM); `saved` says what was kept and how to go on,
    for the command's message."""

    def __init__(self, saved: str):
        super().__init__(saved)
        self.saved = saved


def _manager(workdir: pathlib.Path, create: bool):
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, create=create))


def _record(hp: TrainParams, style_digest: str, weights: VGGWeights, seed: int) -> dict:
    return {"hyperparameters": dataclasses.asdict(hp), "style": style_digest,
            "weights": weights.digest, "seed": seed}


def _restore(workdir: pathlib.Path, step: int, state: TrainState) -> TrainState:
    """The checkpoint of `step` in `workdir`, shaped as `state`.

    Raises:
      InputError: its files are damaged (orbax's own complaints stay off the terminal).
    """
    import orbax.checkpoint as ocp
    from absl import logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.FATAL)  # orbax logs a damaged file as an ERROR line
    try:
        return _manager(workdir, create=False).restore(
            step, args=ocp.args.StandardRestore(state))
    except Exception:  # noqa: BLE001 (any decoding failure means the same to the user)
        raise InputError(f"{workdir / 'checkpoints' / str(step)} is not a readable checkpoint "
                         "(damaged or cut short); remove that folder to resume from an earlier "
                         "one, or give a new --workdir") from None
    finally:
        logging.set_verbosity(verbosity)


def train(style: np.ndarray, data_dir: str | pathlib.Path, workdir: str | pathlib.Path,
          hp: TrainParams, weights: VGGWeights, *, steps: int, seed: int = 0,
          save_every: int = 500, log_every: int = 10, resume: bool = False,
          progress: bool = True, plan: Plan | None = None) -> TrainState:
    """Trains the network for `style` (float[H, W, 3] in [0, 1]) on the photos in `data_dir`
    up to `steps` steps, writing to `workdir`: config.json, metrics.jsonl (one line per logged
    step: step, every loss term, seconds), checkpoints/ (orbax: parameters, Adam's state, step;
    every `save_every` steps, at the end and on interruption) and, at the end, model.msgpack
    (`export`). With `resume`, the latest checkpoint made by the same configuration is
    continued: the same batches follow, so the loss curve is the uninterrupted run's.

    Everything is checked first (`preflight`, unless its `plan` is given; then the
    configuration a resumed checkpoint was made with) and nothing is written before the first
    step has finished: a bad input, or an interruption or a divergence before then, leaves the
    workdir as it was (not even made).

    Raises:
      InputError: what `preflight` refuses; a checkpoint of another configuration, or a damaged
        one; a loss or parameters that became NaN or infinite (the last finite state is kept as
        a checkpoint, no model is exported).
      Stopped: Ctrl-C or SIGTERM; the last finished step is kept as a checkpoint.
    """
    workdir = pathlib.Path(workdir)
    interrupted = threading.Event()
    # Ctrl-C and SIGTERM end the run between steps, so a step and its log line are never split
    restore_signals = interrupt.defer(interrupted)
    try:
        return _train(style, data_dir, workdir, hp, weights, steps=steps, seed=seed,
                      save_every=save_every, log_every=log_every, progress=progress,
                      interrupted=interrupted,
                      plan=plan or preflight(data_dir, workdir, hp, steps=steps, resume=resume))
    finally:
        restore_signals()


def _train(style, data_dir, workdir: pathlib.Path, hp: TrainParams, weights: VGGWeights, *,
           steps: int, seed: int, save_every: int, log_every: int, progress: bool,
           interrupted: threading.Event, plan: Plan) -> TrainState:
    """`train`'s work once its signals are deferred; resumes where `plan` says."""
    import orbax.checkpoint as ocp  # imported here: the command loads this module at start
    key = jax.random.key(seed)
    init_key, data_key = jax.random.split(key)
    record = _record(hp, results.array_digest(style), weights, seed)
    graphdef, state = init_state(hp, init_key)
    saved_step = plan.resume_step  # the latest checkpoint on disk (None: none yet)
    if saved_step is not None:
        saved = results.read_json(workdir / "config.json")
        if saved is None or saved.get("record") != json_normal(record):
            raise InputError(f"{workdir} holds a checkpoint of another training configuration; "
                             "use a new --workdir or drop --resume")
        state = _restore(workdir, saved_step, state)
    loss = prepare_loss(style, hp, weights)
    step_fn = make_step(graphdef, loss, hp, weights.convention)
    start = int(state.step)
    where = workdir / "checkpoints"

    def stopped_at(step: int | None) -> str:
        return ("nothing was saved" if step is None else
                f"its state at step {step} is in {where}: rerun the same command with --resume "
                "to continue")

    if interrupted.is_set():
        raise Stopped(stopped_at(saved_step))
    manager = None

    def open_workdir():
        """Makes the workdir and its record: once the first step has finished."""
        workdir.mkdir(parents=True, exist_ok=True)
        results.write_json(workdir / "config.json", {
            "record": record, "steps": steps, "data_dir": str(data_dir),
            "photos": len(plan.paths), "memory": plan.memory})
        _truncate_metrics(workdir / "metrics.jsonl", start)
        return _manager(workdir, create=True)

    batches = Batches(plan.paths, data_key, hp.batch_size, hp.size, first_step=start)
    bar = Progress(steps, "train", enabled=progress)
    bar.update(start, "resumed" if start else "")
    diverged = None  # the loss terms of a step that did not advance
    try:
        while int(state.step) < steps and not interrupted.is_set():
            got = batches.get(interrupted)
            if got is None:
                break
            step, photos = got
            assert step == int(state.step)
            state, terms = step_fn(state, jnp.asarray(photos))
            done = int(state.step)
            if done == step:  # not finite: the state is the last finite one
                diverged = {k: float(v) for k, v in terms.items()}
                break
            manager = manager or open_workdir()
            if done % log_every == 0 or done == steps:
                line = {"step": done, **{k: float(v) for k, v in terms.items()},
                        "skipped_files": len(batches.skipped)}
                with open(workdir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(line) + "\n")
                bar.update(done, f"loss={line['total']:.4g}")
            if save_every and done % save_every == 0:
                manager.save(done, args=ocp.args.StandardSave(state))
                saved_step = done
    finally:
        batches.close()
        bar.close()
    done = int(state.step)
    if done != (saved_step if saved_step is not None else 0):  # keep every finished step
        manager = manager or open_workdir()
        manager.save(done, args=ocp.args.StandardSave(state), force=True)
        saved_step = done
    if manager is not None:
        manager.wait_until_finished()
    if diverged is not None:
        kept = ("nothing was saved" if saved_step is None else
                f"{where} holds the last finite state (step {saved_step})")
        raise InputError(f"the training diverged: the loss became {diverged['total']} at step "
                         f"{done + 1}; {kept} and no model was exported; lower --learning_rate "
                         "(or the loss weights) and train again in a new --workdir")
    if interrupted.is_set():  # keep what was done; --resume continues from here
        raise Stopped(stopped_at(saved_step))
    export(workdir / "model.msgpack", state.params,
           {**record, "steps": done, "data_dir": str(data_dir), "photos": len(plan.paths),
            "skipped_files": len(batches.skipped), "memory": memory.measured(plan.memory)})
    return state


def json_normal(obj):
    """`obj` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


def _truncate_metrics(path: pathlib.Path, step: int) -> None:
    """Drops lines logged after `step` (a resumed run logs them again)."""
    if not path.exists():
        return
    kept = [l for l in path.read_text().splitlines() if l and json.loads(l)["step"] <= step]
    image_lib.write_atomic(path, lambda f: f.write("".join(l + "\n" for l in kept).encode()))


def export(path: pathlib.Path, params: dict, record: dict) -> None:
    """One msgpack file holding the parameters and how they were trained, written atomically."""
    from flax import serialization
    blob = serialization.msgpack_serialize({
        "format": "jstyle-fast-1", "config": json.dumps(json_normal(record)),
        "params": jax.tree.map(np.asarray, params)})
    image_lib.write_atomic(pathlib.Path(path), lambda f: f.write(blob))


def load_model(path: str | pathlib.Path) -> tuple[TransformNet, dict]:
    """The network saved by `export`, and its training record.

    Raises:
      InputError: the file is missing, is not a jstyle fast model, or holds NaN or infinite
        weights (a diverged training: its images would be black).
    """
    from flax import serialization
    path = pathlib.Path(path)
    try:
        saved = serialization.msgpack_restore(path.read_bytes())
        assert saved["format"] == "jstyle-fast-1"
        record = json.loads(saved["config"])
        net = TransformNet(width=record["hyperparameters"]["width"], rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(net)
        expected = jax.tree.map(np.shape, nnx.to_pure_dict(state))
        if jax.tree.map(np.shape, saved["params"]) != expected:
            raise ValueError("parameter shapes")
        finite = all(np.isfinite(x).all() for x in jax.tree.leaves(saved["params"]))
        net = nnx.merge(graphdef, jax.tree.map(jnp.asarray, saved["params"]))
    except OSError as e:
        raise InputError(f"cannot read --model={path} ({e.strerror}); give the model.msgpack "
                         "that `jstyle train` wrote") from None
    except Exception:  # noqa: BLE001 (any decoding failure means the same to the user)
        raise InputError(f"--model={path} is not a jstyle fast-style model; give the "
                         "model.msgpack that `jstyle train` wrote") from None
    if not finite:
        raise InputError(f"--model={path} holds NaN or infinite weights (its training "
                         "diverged); train it again with a lower --learning_rate")
    return net, record
