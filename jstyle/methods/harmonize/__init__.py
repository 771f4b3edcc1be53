"""Luan, Paris, Shechtman & Bala (2018), "Deep Painterly Harmonization".

  jstyle --method=harmonize --content=composite.png --style=painting.jpg --mask=object.png

`composite` is the painting with an object pasted in, `mask` marks the object (white). The
object is painted into the painting in two passes of pixel optimisation that move only the
pixels of a loose mask around it (the tight mask dilated as the authors' dilate_mask.m does, or
--dilated_mask); every other pixel stays the composite's own.

Pass 1 (neural_gram.lua): at relu3_1, relu4_1 and relu5_1 every composite position is matched
independently to its most similar painting position (cosine of 3 x 3 neighbourhoods,
`fields.nnf_centred`), and the masked Grams of the matched painting features are the style
targets; content at relu4_1 and total variation; weights 5 / 100 / 1e-3; L-BFGS.

Pass 2 (neural_paint.lua): one field at the reference layer from pass 1's image to the painting
(exact, on features normalised per position), made consistent (`fields.refine_field`: each
position takes the neighbours' proposal closest in the painting's colours to the others) and
stripped of duplicates (`fields.used_positions`: the painting positions used, each counted
once, with their neighbours). The style targets are the masked Grams (relu1_1 ... relu4_1) and
the histograms (relu1_1, relu4_1) of the painting's features at the used positions, carried
to each layer; content at relu4_1; total variation inside the mask. The weights follow a style
level (the authors' painting categories, 1 / 5 / 10) and the painting's noise: tv = 10 / (1 +
exp(1e4 * noise - 25)), style = level, histogram = (10 - tv) * level, tv * level
(params_wikiart_genre). The result is the tight mask's region (its edge blurred) over the
composite; `--postprocess=guided` then smooths its chroma (filt_cnn_artifact.m).

Only the region that can change is computed: each pass runs the network on a crop around the
loose mask, extended by twice the receptive radius of its deepest layer (`vgg.receptive_radius`:
the masks spread as far as the receptive field through the network, and the features of every
position they touch must see the pixels the whole image would give them) and aligned to that
layer's pooling grid. Normalisations that count the whole map (the content loss's mean) use the
whole image's sizes, so a crop's loss and gradient equal the whole image's (tested).

Presets (paper vs the authors' code):
  * "code" (default): neural_paint.lua's layer list puts the reference layer at relu4_1
    (`layers = 'relu1_1,relu2_1,relu3_1,relu4_1'`, the field made at `i == #layers`); its
    loss modules replace each term's gradient by the unit vector times the weight and mask the
    gradient at every loss layer (ContentLoss/StyleLoss/HistLoss/TVLoss:updateGradInput,
    `gradInput:div(magnitude + 1e-8)`), with L-BFGS at learningRate 0.1 without line search
    (optim_state: tolX = tolFun = -1); pass 2 starts from the composite (`img =
    content_image_caffe`, the README's `-content_image data/X_naive.jpg`); pass 1 is L-BFGS
    without line search at Torch's default step 1 (neural_gram.lua optim_state).
  * "paper": the paper's reference layer conv4_1, pass 2 starting from pass 1's output (the
    paper's pipeline: the second pass refines the first's result), and the weighted sum of
    the losses optimised with its true gradient in both passes (L-BFGS with a line search).
  * "quick": "code" with 80 + 200 iterations and pass 1 under a line search (with fixed steps
    its image is still noise after 100 iterations), so a 700 px painting finishes within 10
    minutes on 2 CPU cores (README).
Where jstyle departs from the code: the content loss of pass 1 is masked as pass 2's (the code
compares the whole map and masks only its gradient); the histogram loss is the exact,
bin-free quantile match (`losses.match_histograms_masked`) where the code remaps through a
256-bin histogram; pass 1's gradient is the true gradient of its masked losses (the code masks
the gradient again at every loss layer, a difference only where the blurred mask is below 1).
The authors' WikiArt classifier that picks the style level was never released: --style_level.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.engine.kinds import Image, Images, Mask
from jstyle.engine.options import RunOptions
from jstyle.engine.program import make_problem
from jstyle.engine.session import Result, Session, floats, made, stop_reason
from jstyle.errors import InputError
from jstyle.methods.harmonize.passes import (  # noqa: F401  (the method's pieces)
    Data, loss_terms, loss_terms_normalized, noise_level, pass1_data, pass2_data,
    pass2_weights, used_painting)
from jstyle.methods.harmonize.regions import (  # noqa: F401
    Box, Working, compose, crop_box, crop_of, postprocess, prepare_inputs, whole)
from jstyle.methods.harmonize.settings import (  # noqa: F401
    CONTENT_LAYER, MASK_EPS, OPTIONS, OUTPUTS, PASS1_STYLE, PASS2_HIST, PASS2_STYLE,
    PRESETS, REFERENCE_LAYERS, WHOLE_IMAGES, HarmonizeParams, Params, levels, validate)
from jstyle.nets import vgg
from jstyle.nets.weights import VGGWeights
from jstyle.system import memory


class Inputs(NamedTuple):
    """The composite, the painting and the masks, float32[H, W, C] in [0, 1] each."""
    content: Image  # the composite: the painting with the object pasted in
    styles: Images  # [the painting], the composite's size
    mask: Mask  # the pasted object, white on black, any image of the composite's aspect ratio
    dilated_mask: Mask | None = None  # the region the passes may change (default: `mask`
    #   dilated as the authors' dilate_mask.m)


def _pass_options(opts: RunOptions, steps: int, linesearch: str, learning_rate: float
                  ) -> RunOptions:
    """The optimiser of a pass: L-BFGS (100 pairs, as Torch's optim.lbfgs) with optax's line
    search ("zoom") or fixed steps of `learning_rate` ("none", Torch's without one); every
    iteration runs (the code's tolX = tolFun = -1)."""
    return dataclasses.replace(opts, steps=steps, optimizer="lbfgs", lbfgs_memory=100,
                               linesearch=linesearch, learning_rate=learning_rate, tol=0.0,
                               remat=False)


def run_pass(index: int, work: Working, box: Box, pass1: np.ndarray | None,
             hp: HarmonizeParams, opts: RunOptions, weights: VGGWeights, *, session: Session,
             offset: int, passes: list[dict], resume: bool) -> tuple[np.ndarray, dict]:
    """Pass `index` (0: neural_gram.lua's, 1: neural_paint.lua's from pass 1's image) on its
    crop `box`: (its image composed over the composite, float32[H, W, 3] in 8-bit levels; its
    record entry)."""
    t0 = time.perf_counter()
    vgg_params, convention = vgg.prepare(weights.params), weights.convention
    if index == 0:
        data = pass1_data(work, box, hp, vgg_params, convention)
        terms = loss_terms
        pass_opts = _pass_options(opts, hp.pass1_steps, hp.pass1_linesearch, 1.0)
        start = crop_of(work.composite, box)
    else:
        used = used_painting(work, pass1, hp, vgg_params, convention)
        data = pass2_data(work, box, hp, used, vgg_params, convention)
        true = hp.gradients == "true"
        terms = loss_terms if true else loss_terms_normalized
        pass_opts = _pass_options(opts, opts.steps, "zoom" if true else "none", 0.1)
        start = crop_of(pass1 if hp.pass2_init == "pass1" else work.composite, box)
    matched = time.perf_counter() - t0
    problem = make_problem(terms, data, convention, pass_opts, work.composite, [work.painting],
                           None, start)
    done = session.optimise(
        problem, pass_opts.steps, pass_opts, level=index, offset=offset,
        position={"passes": passes}, resume=resume,
        arrays={} if pass1 is None else {"pass1": pass1},
        finish=lambda out: compose(work, box, out * 255.0) / 255.0)
    return compose(work, box, done.image), {
        "pass": index + 1, "crop": [int(v) for v in box],
        "initial_loss": floats(problem.terms(jnp.asarray(start), data)),
        "final_loss": floats(problem.terms(jnp.asarray(done.image), data)),
        "steps": int(done.state.step), "stopped": stop_reason(done.state),
        "matching_seconds": round(matched, 3), "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_gib": round(memory.peak_rss_gib(), 3),
        "weights": {k: float(v) for k, v in data.weights.items()}}


def run(key: jax.Array, inputs: Inputs, hp: HarmonizeParams, opts: RunOptions,
        weights: VGGWeights, *, session: Session) -> Result:
    """Paints the object of `inputs.content` (the composite) into `inputs.styles[0]` (the
    painting). Deterministic: `key` is not used. Each pass's state is checkpointed every
    --save_every steps and when interrupted; a matching checkpoint is resumed from.

    Returns:
      Result with images {"output": pass 2, "pass1": pass 1}, float32[H', W', 3] in [0, 1] at
      the working size (--size on the longer edge), and a record with both passes' losses,
      steps and seconds.
    Raises:
      InputError: bad options or inputs (one line each, before any work).
      Stopped: Ctrl-C or SIGTERM; the state was saved to the checkpoint.
    """
    del key  # deterministic: no noise, no other start
    validate(hp, opts, len(inputs.styles))
    if inputs.mask is None:
        raise InputError("--method=harmonize needs --mask (the pasted object, white on black)")
    as_float = lambda m: None if m is None else np.asarray(m, np.float32)
    work = prepare_inputs(inputs.content, inputs.styles[0], as_float(inputs.mask),
                          as_float(inputs.dilated_mask), opts.size)
    boxes = (crop_box(work.loose, PASS1_STYLE[-1]),
             crop_box(work.loose, max(PASS2_STYLE, key=vgg.LAYERS.index)))
    session.require(
        max(memory.pixel_run_gib(b.bottom - b.top, b.right - b.left, "lbfgs", 100)
            for b in boxes) + WHOLE_IMAGES * memory.image_gib(*work.composite.shape[:2]),
        "lower --size")
    masks_given = [inputs.mask] + ([] if inputs.dilated_mask is None else [inputs.dilated_mask])
    saved = session.begin(made(
        "harmonize", hp, opts, weights, [inputs.content, *inputs.styles, *masks_given],
        levels=[{"size": opts.size, "steps": hp.pass1_steps},  # a level per pass
                {"size": opts.size, "steps": opts.steps}]), total=hp.pass1_steps + opts.steps)
    session.within(saved, hp.pass1_steps + opts.steps)
    first = saved["level"] if saved else 0
    passes = list(saved["passes"]) if first else []
    pass1 = session.arrays["pass1"] if first else None
    offset = passes[0]["steps"] if first else 0
    for index in range(first, 2):
        image, entry = run_pass(index, work, boxes[index], pass1, hp, opts, weights,
                                session=session, offset=offset, passes=passes,
                                resume=saved is not None and index == first)
        passes.append(entry)
        offset += entry["steps"]
        pass1 = image if index == 0 else pass1
        if entry["stopped"] == "nan":  # pass 2 would start from a failed pass
            break
    output = postprocess(work, image) if hp.postprocess == "guided" else image
    return session.result(
        {"output": output / 255.0, "pass1": pass1 / 255.0},
        size=list(work.composite.shape[:2]), passes=passes, steps=offset,
        loose_fraction=round(float(work.loose.mean()), 4),
        tight_fraction=round(float(work.tight.mean()), 4), stopped=passes[-1]["stopped"])
