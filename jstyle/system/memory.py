"""How much memory a run will need, and how much there is: checked before a run starts, so
that a run too large for the machine is one clear error instead of the kernel's out-of-memory
killer (which can take other work down with it).

The estimate of a pixel-optimising run is calibrated on the README's memory benchmark
(`benchmarks/memory_benchmark.py`: the default Gatys objective, tubingen x starry_night, on the
2-core development machine): peak resident memory 1.35, 3.12 and 9.90 GiB at 512, 1024 and 2048
px with Adam, a line through them of 0.78 GiB plus 2.90 GiB per megapixel (within 3%), and
11.47 GiB at 2048 px with L-BFGS, whose 10 correction pairs and line search add about 0.5
GiB per megapixel. A method adds what it keeps besides (CNNMRF: its candidate patches).
"""

from __future__ import annotations

import pathlib

from jstyle.errors import InputError

GIB = 2.0 ** 30
BASE_GIB = 0.78  # the runtime, compiler, weights and targets of a small run
GIB_PER_MPX = 2.90  # activations and gradients of the network, per megapixel of the output
LBFGS_GIB_PER_MPX = (0.26, 0.024)  # L-BFGS: line search, plus per correction pair
TILED_GIB_PER_MPX = 0.25  # tiled (jstyle.ops.tiles): what stays whole-image size besides the
#   optimiser (pixels, their gradient, content targets, the gradient's accumulator); within
#   1-21% of the peaks at 2048 and 4096 px (README, Print resolution)
FORWARD_GIB_PER_MPX = 1.10  # VGG-19's activations to relu5_1 per pixel: 128 channels at full
#   size, 256 at 1/4, 1024 at 1/16, 2048 at 1/64, 2048 at 1/256: 296 float32, 1184 bytes
BFLOAT16_NETWORK_SHARE = 0.72  # the network's memory in bfloat16 over float32's: 1.61 against
#   2.25 GiB above the base at 1024 px (its Grams, losses and convolution outputs stay float32)


def pixel_run_gib(height: int, width: int, optimizer: str, lbfgs_memory: int,
                  window: tuple[int, int] | None = None, precision: str = "float32") -> float:
    """Estimated peak memory (GiB) of optimising an H x W image (the largest level), whole or
    tile by tile with windows of `window` (H_w, W_w) px, its network in `precision`."""
    mpx = height * width / 1e6
    network = GIB_PER_MPX * (mpx if window is None else window[0] * window[1] / 1e6)
    if precision == "bfloat16":
        network *= BFLOAT16_NETWORK_SHARE
    gib = BASE_GIB + network + (0.0 if window is None else TILED_GIB_PER_MPX * mpx)
    if optimizer == "lbfgs":
        gib += (LBFGS_GIB_PER_MPX[0] + LBFGS_GIB_PER_MPX[1] * lbfgs_memory) * mpx
    return gib


def available_gib() -> float:
    """Memory this process may still use, GiB: the accelerator's free memory where JAX runs on
    one, else the least of the machine's available memory (MemAvailable), a cgroup limit's
    headroom and the address space left under `ulimit -v` (RLIMIT_AS, less what the process
    has mapped already)."""
    import jax
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) / GIB
    return min(_meminfo_gib(), _cgroup_gib(), _address_space_gib())


def _meminfo_gib() -> float:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return float("inf")


def _cgroup_gib() -> float:
    try:
        limit = pathlib.Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(pathlib.Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            return (int(limit) - used) / GIB
    except (OSError, ValueError):
        pass
    return float("inf")


def _address_space_gib() -> float:
    """What `ulimit -v` leaves: RLIMIT_AS less the virtual memory mapped now (VmSize)."""
    import resource
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return float("inf")
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return (limit - int(line.split()[1]) * 1024) / GIB
    except OSError:
        pass
    return limit / GIB


def check(estimate_gib: float, available: float, fixes: str) -> None:
    """Raises InputError naming the estimate, what is available and the fixes, when the
    estimate does not fit."""
    if not estimate_gib <= available:  # a NaN or infinite estimate does not fit either
        raise InputError(f"this run needs about {estimate_gib:.1f} GiB of memory, but "
                         f"{available:.1f} GiB is available; {fixes}")


def require(estimate_gib: float, fixes: str) -> dict:
    """The check every run makes before it allocates: raises InputError (naming `fixes`)
    unless `estimate_gib` fits in `available_gib()`; returns the record's memory entry
    (estimate and availability; `measured` adds the peak at the end)."""
    available = available_gib()
    check(estimate_gib, available, fixes)
    return {"estimated_peak_gib": round(estimate_gib, 3), "available_gib": round(available, 3)}


def measured(entry: dict) -> dict:
    """`entry` (from `require`) with this process's peak resident memory so far added."""
    return {**entry, "measured_peak_rss_gib": round(peak_rss_gib(), 3)}


def image_gib(height: int, width: int, channels: int = 3) -> float:
    """One float32 image of H x W x channels, GiB (the unit of images held whole: inputs at
    their working size, style images at --style_scale, frames, network inputs)."""
    return height * width * channels * 4 / GIB


def features_gib(height: int, width: int) -> float:
    """The network's forward activations of one H x W image without gradients (the targets of
    a style or content image), GiB, counting every layer to relu5_1 held at once."""
    return FORWARD_GIB_PER_MPX * height * width / 1e6


def exhausted(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed (Python's MemoryError, or XLA's
    RESOURCE_EXHAUSTED on any backend): the machine's fault, reported in one line."""
    return isinstance(error, MemoryError) or (
        type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError")
        and ("RESOURCE_EXHAUSTED" in str(error) or "Out of memory" in str(error)))


def describe(error: BaseException) -> str:
    """`error`'s first line, shortened, for a one-line message."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, GiB (Linux reports KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
