"""The memory estimate against the measurements it was calibrated on (the README's memory
benchmark and CNNMRF step table), and the check that uses it."""

import pytest

from jstyle.system import memory
from jstyle.errors import InputError
from jstyle.methods import mrf

# (height, width, optimizer, measured peak GiB): benchmarks/memory_benchmark.py on the 2-core
# development machine, tubingen x starry_night, the default objective (README).
MEASURED = [(384, 512, "adam", 1.35), (768, 1024, "adam", 3.12), (1536, 2048, "adam", 9.90),
            (1536, 2048, "lbfgs", 11.47)]
MEASURED_BFLOAT16 = (768, 1024, "adam", 2.39)  # --precisions=bfloat16, README


# Tiled (README, Print resolution): (height, width, optimizer, tiles per side, measured peak GiB)
MEASURED_TILED = [(1536, 2048, "adam", 2, 3.80), (3072, 4096, "adam", 2, 11.63),
                  (3072, 4096, "lbfgs", 3, 15.86)]


@pytest.mark.parametrize("height,width,optimizer,peak", MEASURED)
def test_the_estimate_is_within_25_percent_of_the_measured_peaks(height, width, optimizer, peak):
    assert abs(memory.pixel_run_gib(height, width, optimizer, 10) / peak - 1) < 0.25


def test_the_bfloat16_estimate_is_within_25_percent_of_the_measured_peak():
    height, width, optimizer, peak = MEASURED_BFLOAT16
    estimate = memory.pixel_run_gib(height, width, optimizer, 10, precision="bfloat16")
    assert abs(estimate / peak - 1) < 0.25
    assert estimate < memory.pixel_run_gib(height, width, optimizer, 10)


@pytest.mark.parametrize("height,width,optimizer,grid,peak", MEASURED_TILED)
def test_the_tiled_estimate_is_within_25_percent_of_the_measured_peaks(height, width, optimizer,
                                                                      grid, peak):
    from jstyle.ops import tiles
    window = tiles.plan(height, width, (grid, grid), "relu5_1").window
    assert abs(memory.pixel_run_gib(height, width, optimizer, 10, window) / peak - 1) < 0.25


def test_cnnmrf_paper_preset_estimate_is_within_25_percent_of_its_measured_peak():
    hp, opts = mrf.PRESETS["paper"]  # 384 x 288, starry_night 1024 x 640: 3.1 GiB measured
    estimate = memory.pixel_run_gib(288, 384, opts.optimizer, opts.lbfgs_memory) + \
        mrf.candidates_gib(hp, opts, (288, 384), [(640, 1024, 3)])
    assert abs(estimate / 3.1 - 1) < 0.25


def test_a_run_too_large_is_refused_with_the_numbers_and_the_fixes():
    memory.check(2.0, 3.0, "lower --size")
    with pytest.raises(InputError, match=r"needs about 5.0 GiB of memory, but 3.0 GiB is "
                                         r"available; lower --size"):
        memory.check(5.0, 3.0, "lower --size")
    assert memory.available_gib() > 0 and memory.peak_rss_gib() > 0


def test_the_analogy_estimate_is_within_25_percent_of_its_measured_peaks():
    from jstyle.methods import analogy  # README, Deep Image Analogy speed: both directions
    for side, peak in ((448, 4.4), (224, 1.8)):
        assert abs(analogy.run_gib((side, side), (side, side)) / peak - 1) < 0.25


def test_what_ulimit_v_leaves_bounds_the_memory_available():
    """A child under `ulimit -v 3000000` (KiB) sees at most that, less what it has mapped."""
    import subprocess
    import sys
    done = subprocess.run(["bash", "-c", 'ulimit -v 3000000 && exec "$@"', "bash", sys.executable,
                           "-c", "from jstyle.system import memory; print(memory.available_gib())"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout) < 3000000 / 2 ** 20


def test_a_failed_allocation_is_told_from_other_errors():
    class JaxRuntimeError(RuntimeError):  # jax.errors.JaxRuntimeError's name and message
        pass
    assert memory.exhausted(MemoryError())
    assert memory.exhausted(JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 200 GB"))
    assert not memory.exhausted(JaxRuntimeError("INVALID_ARGUMENT: shapes"))
    assert not memory.exhausted(ValueError("RESOURCE_EXHAUSTED"))
    assert memory.describe(JaxRuntimeError("RESOURCE_EXHAUSTED: x\ntrace")) == \
        "RESOURCE_EXHAUSTED: x"


def test_a_nan_estimate_does_not_fit():
    with pytest.raises(InputError, match="GiB of memory"):
        memory.check(float("nan"), 3.0, "lower --size")
