"""Training a feed-forward style network (Johnson, Alahi & Fei-Fei 2016) for one style.

The perceptual loss compares the network's output O for a photo crop C on jstyle's VGG-19,
in jstyle's normalisation (features divided by each layer's mean activation, G = F^T F / (H W),
halved mean squared errors, as the Gatys objective):

  L = alpha * L_c(O, C) + beta * sum_l w_l L_s(G_l(O), G_l(S)) + w_tv * L_tv(O)

with content at relu2_2 (pytorch/examples' fast_neural_style; preset "pytorch-examples") or
relu3_3 (the authors' code; preset "johnson") and style at relu1_2, relu2_2, relu3_3, relu4_3.
Adam, batches of random crops from a folder of photos. Every batch is a pure function of the
run's key and the step, so a resumed run sees exactly the batches an uninterrupted one would.
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
from jstyle import interrupt, losses, results, vgg
from jstyle.errors import InputError
from jstyle.params import field
from jstyle.progress import Progress
from jstyle.transform_net import TransformNet
from jstyle.weights import VGGWeights

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OUTPUTS = ("config.json", "metrics.jsonl", "model.msgpack")  # what `train` writes in its workdir,
#   besides checkpoints/


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
                 first_step: int = 0, prefetch: int = 4):
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
                batch = (step, self.make(step))
            except InputError as e:
                batch = (step, e)
            while not self.stop.is_set():
                try:
                    self.queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += 1

    def get(self) -> tuple[int, np.ndarray]:
        step, batch = self.queue.get()
        if isinstance(batch, Exception):
            raise batch
        return step, batch

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
    """Jitted (state, photos float32[B, H, W, 3] in [0, 1]) -> (state, loss terms)."""
    optimizer = optax.adam(hp.learning_rate)

    def objective(params, photos):
        net = nnx.merge(graphdef, params)
        terms = loss_terms(net(photos), photos, loss, hp, convention)
        return terms["total"], terms

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state: TrainState, photos: jax.Array):
        grads, terms = jax.grad(objective, has_aux=True)(state.params, photos)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state,
                          state.step + 1), terms

    return step


# ---------------------------------------------------------------------------------------------
# The loop: checkpoints (orbax), metrics, resume, export.

def _manager(workdir: pathlib.Path):
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def _record(hp: TrainParams, style_digest: str, weights: VGGWeights, seed: int) -> dict:
    return {"hyperparameters": dataclasses.asdict(hp), "style": style_digest,
            "weights": weights.digest, "seed": seed}


def train(style: np.ndarray, data_dir: str | pathlib.Path, workdir: str | pathlib.Path,
          hp: TrainParams, weights: VGGWeights, *, steps: int, seed: int = 0,
          save_every: int = 500, log_every: int = 10, resume: bool = False,
          progress: bool = True) -> TrainState:
    """Trains the network for `style` (float[H, W, 3] in [0, 1]) on the photos in `data_dir`
    up to `steps` steps, writing to `workdir`: config.json, metrics.jsonl (one line per logged
    step: step, every loss term, seconds), checkpoints/ (orbax: parameters, Adam's state, step;
    every `save_every` steps, at the end and on interruption) and, at the end, model.msgpack
    (`export`). With `resume`, the latest checkpoint made by the same configuration is
    continued: the same batches follow, so the loss curve is the uninterrupted run's.

    Raises:
      InputError: a bad folder, or a checkpoint of another configuration with `resume`.
    """
    import orbax.checkpoint as ocp  # imported here: the command loads this module at start
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir={workdir} is a file; give a folder (made if missing)")
    paths = photo_paths(data_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    init_key, data_key = jax.random.split(key)
    record = _record(hp, results.array_digest(style), weights, seed)
    graphdef, state = init_state(hp, init_key)
    manager = _manager(workdir)
    if resume and manager.latest_step() is not None:
        saved = results.read_json(workdir / "config.json")
        if saved is None or saved.get("record") != json_normal(record):
            raise InputError(f"{workdir} holds a checkpoint of another training configuration; "
                             "use a new --workdir or drop --resume")
        state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(state))
    elif not resume:
        for stale in (workdir / "metrics.jsonl", workdir / "model.msgpack"):
            stale.unlink(missing_ok=True)
        for old in manager.all_steps():
            manager.delete(old)
    results.write_json(workdir / "config.json", {"record": record, "steps": steps,
                                                 "data_dir": str(data_dir),
                                                 "photos": len(paths)})
    loss = prepare_loss(style, hp, weights)
    step_fn = make_step(graphdef, loss, hp, weights.convention)
    start = int(state.step)
    _truncate_metrics(workdir / "metrics.jsonl", start)
    batches = Batches(paths, data_key, hp.batch_size, hp.size, first_step=start)
    bar = Progress(steps, "train", enabled=progress)
    bar.update(start, "resumed" if start else "")
    interrupted = threading.Event()
    # Ctrl-C and SIGTERM end the loop between steps, so a step and its log line are never split
    restore = interrupt.defer(interrupted)
    try:
        while int(state.step) < steps and not interrupted.is_set():
            step, photos = batches.get()
            assert step == int(state.step)
            state, terms = step_fn(state, jnp.asarray(photos))
            done = int(state.step)
            if done % log_every == 0 or done == steps:
                line = {"step": done, **{k: float(v) for k, v in terms.items()},
                        "skipped_files": len(batches.skipped)}
                with open(workdir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(line) + "\n")
                bar.update(done, f"loss={line['total']:.4g}")
            if save_every and done % save_every == 0:
                manager.save(done, args=ocp.args.StandardSave(state))
    finally:
        restore()
        batches.close()
        bar.close()
    if manager.latest_step() != int(state.step):
        manager.save(int(state.step), args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()
    if interrupted.is_set():  # keep what was done; --resume continues from here
        raise KeyboardInterrupt
    export(workdir / "model.msgpack", state.params,
           {**record, "steps": int(state.step), "data_dir": str(data_dir), "photos": len(paths),
            "skipped_files": len(batches.skipped)})
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
      InputError: the file is missing or is not a jstyle fast model.
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
        net = nnx.merge(graphdef, jax.tree.map(jnp.asarray, saved["params"]))
    except OSError as e:
        raise InputError(f"cannot read --model={path} ({e.strerror}); give the model.msgpack "
                         "that `jstyle train` wrote") from None
    except Exception:  # noqa: BLE001 (any decoding failure means the same to the user)
        raise InputError(f"--model={path} is not a jstyle fast-style model; give the "
                         "model.msgpack that `jstyle train` wrote") from None
    return net, record
