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
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jstyle import image as image_lib
from jstyle.engine import checkpoint
from jstyle.engine.session import Stopped
from jstyle import results
from jstyle.system import files, interrupt
from jstyle.ops import losses
from jstyle.system import memory
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.params import field
from jstyle.system.progress import Progress
from jstyle.methods.fast.data import (  # noqa: F401  (training's data, re-exported)
    PREFETCH, Batches, photo_paths)
from jstyle.methods.fast.network import TransformNet
from jstyle.nets.weights import VGGWeights

OUTPUTS = ("config.json", "metrics.jsonl", "model.msgpack")  # what `train` writes in its workdir,
#   besides checkpoints/
EARLIER = ("metrics.jsonl", "model.msgpack")  # with checkpoints: an earlier run's work
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


KEEP = 2  # checkpoints kept: the latest two


def checkpoint_path(workdir: pathlib.Path, step: int) -> pathlib.Path:
    """The checkpoint of `step`: WORKDIR/checkpoints/<step>.npz (jstyle.engine.checkpoint)."""
    return pathlib.Path(workdir) / "checkpoints" / f"{step}.npz"


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    """The steps of the checkpoints in `workdir`/checkpoints, ascending (each written
    atomically: a file there is complete)."""
    folder = pathlib.Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.npz") if p.stem.isdigit())


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
    """Everything a resumed run needs; a pytree (jstyle.engine.checkpoint saves it)."""
    params: Any  # the network's parameters, a pure dict of float32 arrays
    opt_state: Any  # Adam's state
    step: jax.Array  # int32[], steps taken


def init_state(hp: TrainParams, key: jax.Array) -> tuple[nnx.GraphDef, TrainState]:
    """A fresh network (initialised from `key`) and its optimiser state."""
    graphdef, params = nnx.split(TransformNet(width=hp.width, rngs=nnx.Rngs(params=key)))
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
# The loop: checkpoints, metrics, resume, export.

def _save(workdir: pathlib.Path, state: TrainState, record: dict) -> int:
    """Keeps `state` as the checkpoint of its step (jstyle's one format), dropping all but the
    latest KEEP; returns the step."""
    step = int(state.step)
    path = checkpoint_path(workdir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, state, {"made": record, "position": {"step": step}})
    for old in checkpoint_steps(workdir)[:-KEEP]:
        checkpoint_path(workdir, old).unlink(missing_ok=True)
    return step


def _record(hp: TrainParams, style_digest: str, weights: VGGWeights, seed: int) -> dict:
    return {"hyperparameters": dataclasses.asdict(hp), "style": style_digest,
            "weights": weights.digest, "seed": seed}


def _restore(workdir: pathlib.Path, step: int, state: TrainState) -> TrainState:
    """The checkpoint of `step` in `workdir`, shaped as `state`.

    Raises:
      InputError: its file is damaged or holds another network's shapes.
    """
    path = checkpoint_path(workdir, step)
    restored = checkpoint.restore(path, state)
    if restored is None:
        raise InputError(f"{path} is not a checkpoint of this network (other shapes); remove it "
                         "to resume from an earlier one, or give a new --workdir")
    return restored


def train(style: np.ndarray, data_dir: str | pathlib.Path, workdir: str | pathlib.Path,
          hp: TrainParams, weights: VGGWeights, *, steps: int, seed: int = 0,
          save_every: int = 500, log_every: int = 10, resume: bool = False,
          progress: bool = True, plan: Plan | None = None) -> TrainState:
    """Trains the network for `style` (float[H, W, 3] in [0, 1]) on the photos in `data_dir`
    up to `steps` steps, writing to `workdir`: config.json, metrics.jsonl (one line per logged
    step: step, every loss term, seconds), checkpoints/ (<step>.npz: parameters, Adam's state, step;
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

    def stopped_at(step: int | None) -> Stopped:
        return Stopped(f"step {step}", None if step is None else where)

    if interrupted.is_set():
        raise stopped_at(saved_step)
    opened = False

    def open_workdir() -> bool:
        """Makes the workdir and its record: once the first step has finished."""
        workdir.mkdir(parents=True, exist_ok=True)
        results.write_json(workdir / "config.json", {
            "record": record, "steps": steps, "data_dir": str(data_dir),
            "photos": len(plan.paths), "memory": plan.memory})
        _truncate_metrics(workdir / "metrics.jsonl", start)
        return True

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
            opened = opened or open_workdir()
            if done % log_every == 0 or done == steps:
                line = {"step": done, **{k: float(v) for k, v in terms.items()},
                        "skipped_files": len(batches.skipped)}
                with open(workdir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(line) + "\n")
                bar.update(done, f"loss={line['total']:.4g}")
            if save_every and done % save_every == 0:
                saved_step = _save(workdir, state, record)
    finally:
        batches.close()
        bar.close()
    done = int(state.step)
    if done != (saved_step if saved_step is not None else 0):  # keep every finished step
        opened = opened or open_workdir()
        saved_step = _save(workdir, state, record)
    if diverged is not None:
        kept = ("nothing was saved" if saved_step is None else
                f"{where} holds the last finite state (step {saved_step})")
        raise InputError(f"the training diverged: the loss became {diverged['total']} at step "
                         f"{done + 1}; {kept} and no model was exported; lower --learning_rate "
                         "(or the loss weights) and train again in a new --workdir")
    if interrupted.is_set():  # keep what was done; --resume continues from here
        raise stopped_at(saved_step)
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
    files.write_atomic(path, lambda f: f.write("".join(l + "\n" for l in kept).encode()))


def export(path: pathlib.Path, params: dict, record: dict) -> None:
    """One msgpack file holding the parameters and how they were trained, written atomically."""
    from flax import serialization
    blob = serialization.msgpack_serialize({
        "format": "jstyle-fast-1", "config": json.dumps(json_normal(record)),
        "params": jax.tree.map(np.asarray, params)})
    files.write_atomic(pathlib.Path(path), lambda f: f.write(blob))


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
