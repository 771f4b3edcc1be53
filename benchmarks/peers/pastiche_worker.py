"""The PyTorch peer for benchmarks/benchmark.py: pastiche 1.6.0 driven over stdin/stdout.

Runs inside the benchmark's own venv (torch==2.13.0, pastiche==1.6.0), never in jstyle's.
Usage: python pastiche_worker.py CONTENT STYLE SIZE OPTIMIZER
Prints one JSON line when ready, then for each line "N" read from stdin runs N optimisation
steps (one `draw()` each: one loss evaluation for Adam and for LBFGS with max_iter=1) and prints
{"seconds": ...}.
"""

import json
import sys
import time

import torch
from pastiche.pastiche import PasticheArtist


def main():
    content, style, size, optimizer = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    start = time.perf_counter()
    artist = PasticheArtist(content, [style], optimizer=optimizer, size=size, device="cpu")
    artist.draw()  # warm-up step
    print(json.dumps({"ready": True, "setup_seconds": time.perf_counter() - start,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "shape": list(artist.pastiche.shape)}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        start = time.perf_counter()
        for _ in range(steps):
            artist.draw()
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": artist.loss}),
              flush=True)


if __name__ == "__main__":
    main()
