"""Writes tests/data/torch_{zip,legacy}.pt with PyTorch itself, and the expected arrays.

jstyle's decoder never imports torch; these tiny files, written by the real `torch.save` in both
serialisations, let its tests check it against PyTorch's own output. Needs torch (run with the
benchmark's peer environment: `~/.cache/jstyle/peer-venv/bin/python tools/make_torch_fixtures.py`).
"""

import collections
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"


def main():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    state = collections.OrderedDict([
        ("features.0.weight", torch.randn(2, 3, 3, 3, generator=g)),
        ("transposed", base.t()),  # non-contiguous strides
        ("offset_view", base[1:3, 2:5]),  # storage offset into a shared storage
        ("bytes", torch.arange(7, dtype=torch.uint8)),
        ("longs", torch.tensor([[1, -2], [3, 2 ** 40]], dtype=torch.int64)),
        ("halves", torch.tensor([0.5, -1.25, 3.0], dtype=torch.float16)),
        ("doubles", torch.tensor([1e-300], dtype=torch.float64)),
        ("param", torch.nn.Parameter(torch.ones(2))),
    ])
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(state, OUT / "torch_zip.pt")
    torch.save(state, OUT / "torch_legacy.pt", _use_new_zipfile_serialization=False)
    np.savez(OUT / "torch_expected.npz",
             **{k: v.detach().numpy().copy() for k, v in state.items()})
    print("wrote", *sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
