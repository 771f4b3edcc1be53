"""Deep Painterly Harmonization's settings: hyperparameters, presets (paper vs the authors'
code), layers and validation."""

from __future__ import annotations

import dataclasses


from jstyle.engine import options
from jstyle.engine.options import RunOptions
from jstyle.errors import InputError
from jstyle.engine import optimize
from jstyle.params import field, pytree

OPTIONS = ("size", "steps", "print_every", "save_every")
OUTPUTS = ("output", "pass1")
WHOLE_IMAGES = 6  # whole-size float32 images held beside a pass's crop: composite,
#   painting, pass 1's result, the composed output and the post-processing's two
REFERENCE_LAYERS = ("relu4_1", "relu5_1", "conv4_1")  # code, code's comment, paper
PASS1_STYLE = ("relu3_1", "relu4_1", "relu5_1")  # neural_gram.lua -style_layers
PASS2_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # neural_paint.lua style_layers
PASS2_HIST = ("relu1_1", "relu4_1")  # neural_paint.lua hist_layers
CONTENT_LAYER = "relu4_1"  # both passes' content layer
MASK_EPS = 0.1  # the code's threshold of a blurred mask (HistLoss maskI, tmask, dilation)


@pytree
@dataclasses.dataclass(frozen=True)
class HarmonizeParams:
    """Deep Painterly Harmonization's hyperparameters (defaults: the authors' code)."""
    reference_layer: str = field("relu4_1", "Layer of pass 2's field: relu4_1 (code), relu5_1 "
                                 "(code's comment) or conv4_1 (paper).",
                                 choices=REFERENCE_LAYERS, static=True)
    gradients: str = field("normalized", "Pass 2's update: normalized (each term's gradient a "
                           "unit vector times its weight, masked at every layer, fixed L-BFGS "
                           "steps of 0.1: the code) or true (the weighted sum's gradient, "
                           "L-BFGS with a line search).", choices=("normalized", "true"),
                           static=True)
    pass2_init: str = field("composite", "Pass 2 starts from the composite (code) or from "
                            "pass 1's output (pass1).", choices=("composite", "pass1"),
                            static=True)
    pass1_linesearch: str = field("none", "Pass 1's L-BFGS: none (fixed steps of 1, Torch's "
                                  "optim.lbfgs as neural_gram.lua runs it) or zoom (optax's "
                                  "line search: smooth within fewer iterations).",
                                  choices=optimize.LINESEARCHES, static=True)
    postprocess: str = field("none", "none, or guided: the result's CIELAB chroma smoothed "
                             "by a guided filter on the composite (filt_cnn_artifact.m).",
                             choices=("none", "guided"), static=True)
    pass1_steps: int = field(1000, "Pass 1's L-BFGS iterations (--steps: pass 2's).",
                             static=True)
    patch_size: int = field(3, "Patch size of both passes' matching.", static=True)
    refine_size: int = field(5, "Neighbourhood of the consistent mapping (refineNNF).",
                             static=True)
    refine_iterations: int = field(1, "Iterations of the consistent mapping.", static=True)
    ring_radius: int = field(1, "Neighbours counted around each used painting position "
                             "(Ring2).", static=True)
    style_level: float = field(5.0, "Pass 2's style level: 1, 5 or 10 in the authors' "
                               "categories (stronger for looser, more textured paintings).")
    pass1_content_weight: float = field(5.0, "Pass 1's content weight.")
    pass1_style_weight: float = field(100.0, "Pass 1's style weight.")
    pass1_tv_weight: float = field(1e-3, "Pass 1's total-variation weight.")
    content_weight: float = field(1.0, "Pass 2's content weight.")


Params = HarmonizeParams

_CODE_RUN = RunOptions(size=700, steps=1000, print_every=100)  # -image_size 700, 1000 iterations
PRESETS: dict[str, tuple[HarmonizeParams, RunOptions]] = {
    "code": (HarmonizeParams(), _CODE_RUN),
    "paper": (HarmonizeParams(reference_layer="conv4_1", gradients="true", pass2_init="pass1",
                              pass1_linesearch="zoom"), _CODE_RUN),
    "quick": (HarmonizeParams(pass1_steps=80, pass1_linesearch="zoom"),
              dataclasses.replace(_CODE_RUN, steps=200, print_every=50)),
}


def validate(hp: HarmonizeParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    if num_styles != 1:
        raise InputError(f"--method=harmonize paints into one painting; give one --style (got "
                         f"{num_styles})")
    for name, value, allowed in (
            ("reference_layer", hp.reference_layer, REFERENCE_LAYERS),
            ("gradients", hp.gradients, ("normalized", "true")),
            ("pass2_init", hp.pass2_init, ("composite", "pass1")),
            ("postprocess", hp.postprocess, ("none", "guided")),
            ("pass1_linesearch", hp.pass1_linesearch, optimize.LINESEARCHES)):
        if value not in allowed:
            raise InputError(f"unknown --{name}={value}; use one of {', '.join(allowed)}")
    options.check_at_least({"pass1_steps": hp.pass1_steps, "refine_iterations":
                         hp.refine_iterations}, 0, "give a count, or 0")
    options.check_at_least({"ring_radius": hp.ring_radius}, 0, "give a radius in positions")
    for name in ("patch_size", "refine_size"):
        if getattr(hp, name) < 1 or getattr(hp, name) % 2 == 0:
            raise InputError(f"--{name}={getattr(hp, name)} must be odd and >= 1, such as 3")
    options.check_nonnegative({n: [getattr(hp, n)] for n in (
        "style_level", "pass1_content_weight", "pass1_style_weight", "pass1_tv_weight",
        "content_weight")})
    options.check_at_least({"size": opts.size, "steps": opts.steps}, 1,
                        "give a positive whole number")
    options.check_size(opts)
    options.check_at_least({n: getattr(opts, n) for n in ("print_every", "save_every")}, 0,
                        "give a step count, or 0 to turn it off")




def levels(hp: HarmonizeParams, opts: RunOptions) -> list[int]:
    """The steps of the two passes, in order (the command's snapshot plan)."""
    return [hp.pass1_steps, opts.steps]
