"""The PyTorch peer for benchmarks/fast_benchmark.py: jstyle's fast network in torch, eager, CPU.

Runs inside the benchmark's own venv (torch==2.13.0), never in jstyle's.
Usage: python fast_torch_worker.py HEIGHT WIDTH WIDTH_MULTIPLIER

The same architecture as jstyle.methods.fast.network (pytorch/examples' fast_neural_style
TransformerNet with nearest-neighbour upsampling): reflection padding, 9x9 conv 32, stride-2
convs 64 and 128, five residual blocks, upsample + conv to 64 and 32, 9x9 conv to 3, instance
norm, random weights (timing only). Prints one JSON line when ready; then for each line "N" on
stdin stylises one HEIGHT x WIDTH image N times and prints {"seconds": ...}.
"""

import json
import sys
import time

import torch
import torch.nn as nn


class Conv(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1):
        super().__init__(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class NormConv(nn.Module):
    def __init__(self, cin, cout, k, stride=1, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.conv = Conv(cin, cout, k, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return torch.relu(self.norm(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.first = NormConv(c, c, 3)
        self.conv = Conv(c, c, 3)
        self.norm = nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.norm(self.conv(self.first(x)))


class TransformNet(nn.Module):
    def __init__(self, width=1.0):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.layers = nn.Sequential(
            NormConv(3, c1, 9), NormConv(c1, c2, 3, 2), NormConv(c2, c3, 3, 2),
            *[Residual(c3) for _ in range(5)],
            NormConv(c3, c2, 3, upsample=True), NormConv(c2, c1, 3, upsample=True),
            Conv(c1, 3, 9))

    def forward(self, x):
        return (torch.tanh(self.layers(x)) + 1) / 2


def main():
    height, width, multiplier = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    net = TransformNet(multiplier).eval()
    image = torch.rand(1, 3, height, width)
    with torch.no_grad():
        net(image)  # warm-up
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__}),
          flush=True)
    for line in sys.stdin:
        n = int(line)
        started = time.perf_counter()
        with torch.no_grad():
            for _ in range(n):
                net(image)
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
