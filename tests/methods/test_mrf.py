"""CNNMRF (Li & Wand 2016) on the real VGG-19 weights and real images at small sizes."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import image
from jstyle.ops import masks
from jstyle.ops import patches
from jstyle.errors import InputError
from jstyle import methods
from jstyle.methods import mrf
from jstyle.engine.session import Session

CONTENT_PATH, STYLE_PATH = image.sample_paths()
CONTENT, STYLE = image.load(CONTENT_PATH, 96), image.load(STYLE_PATH, 96)
FAST = dataclasses.replace(mrf.PRESETS["cnnmrf"][1], size=64, steps=6, pyramid_levels=1,
                           print_every=3)


def test_registered_with_the_authors_defaults_and_the_papers():
    assert methods.get("mrf") is mrf
    code, paper = mrf.PRESETS["cnnmrf"][0], mrf.PRESETS["paper"][0]
    assert (code.mrf_layers, code.content_layers, code.patch_size, code.style_stride) == (
        ("relu3_1", "relu4_1"), ("relu4_1",), 3, 2)
    assert (code.content_weight, code.mrf_weight, code.tv_weight) == (2e1, 1e-4, 1e-3)
    opts = mrf.PRESETS["cnnmrf"][1]
    assert (opts.size, opts.pyramid_levels, opts.steps, opts.optimizer, opts.linesearch) == (
        384, 3, 100, "lbfgs", "none")
    assert (paper.content_layers, paper.style_stride, paper.synthesis_stride) == (
        ("relu4_2",), 1, 1)
    assert paper.rotations > 0 and paper.scales > 0


def test_style_copies_rotate_without_fill_and_scale():
    ones = np.ones((40, 60, 2), np.float32)
    copies = mrf.style_copies(ones, 1, 1)
    assert len(copies) == 9 and any(c is ones for c in copies)
    for c in copies:
        assert c.min() > 0.99  # the crop keeps no corner of the rotation's fill
    rotated = image.rotate_crop(ones, math.pi / 24)
    h, w = image.inscribed_size(40, 60, math.pi / 24)
    assert rotated.shape == (h, w, 2) and 30 < h < 40 and 45 < w < 60
    assert max(copies[-1].shape[:2]) == math.floor(max(copies[-2].shape[:2]) * 1.05)


def _problem(vgg_weights, hp=None, labels=None, opts=FAST):
    hp = hp or mrf.PRESETS["cnnmrf"][0]
    return mrf.setup(CONTENT, [STYLE], hp, opts, vgg_weights, jax.random.key(0), labels=labels)


@pytest.mark.parametrize("preset", ["cnnmrf", "paper"])
def test_gradient_is_finite_and_a_tiny_real_run_lowers_the_loss(vgg_weights, preset):
    hp = mrf.PRESETS[preset][0]
    problem = _problem(vgg_weights, hp)
    objective = lambda x: mrf.objective(x, problem.data, vgg_weights.convention)
    grad = jax.jit(jax.grad(objective))(jnp.asarray(problem.init))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    result = mrf.run(jax.random.key(0), mrf.Inputs(CONTENT, [STYLE]), hp, FAST, vgg_weights,
                     session=Session(progress=False))
    assert result.record["method"] == "mrf" and result.record["steps"] == FAST.steps
    first, last = result.record["initial_loss"], result.record["final_loss"]
    assert last["total"] < first["total"] and last["mrf"] < first["mrf"]
    assert result.image.shape == (43, 64, 3) and np.all(np.isfinite(result.image))


def test_same_seed_same_output_and_the_pyramid_runs(vgg_weights):
    opts = dataclasses.replace(FAST, size=96, pyramid_levels=2, steps=3, init="noise")
    runs = [mrf.run(jax.random.key(3), mrf.Inputs(CONTENT, [STYLE]), mrf.PRESETS["cnnmrf"][0],
                    opts, vgg_weights, session=Session(progress=False)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].image, runs[1].image)
    assert [h["level"] for h in runs[0].history] == [0, 1]


def test_label_channels_make_patches_match_within_regions(vgg_weights):
    """Content left half / right half against a style with the regions the other way round:
    with the semantic guide every patch inside a region takes a style patch of that region."""
    h, w = CONTENT.shape[:2]
    content_map = np.zeros((h, w, 3), np.float32)
    content_map[:, : w // 2] = (1, 0, 0)
    content_map[:, w // 2:] = (0, 0, 1)
    sh, sw = STYLE.shape[:2]
    style_map = np.zeros((sh, sw, 3), np.float32)
    style_map[: sh // 2] = (0, 0, 1)
    style_map[sh // 2:] = (1, 0, 0)
    labels = masks.match(content_map, [style_map])
    problem = _problem(vgg_weights, labels=labels)
    targets = problem.data[1]
    for layer in ("relu3_1", "relu4_1"):
        guide, pool = targets.guide[layer], targets.candidate_guide[layer]
        feats = mrf._layer_features(problem.data[0], jnp.asarray(problem.init), (layer,), "max",
                                    vgg_weights.convention)[layer]
        field, _ = patches.nearest_patches(feats, targets.candidates[layer], 3, 2, guide=guide,
                                           candidate_guide=pool, guide_weight=10.0)
        out_region = np.argmax(np.asarray(guide)[1:-1:2, 1:-1:2], -1)  # patch centres
        out_region = out_region[: field.shape[0], : field.shape[1]]
        chosen = np.asarray(pool)[np.asarray(field)][..., 1, 1, :]  # the chosen patches' centres
        pure = np.asarray(guide)[1:-1:2, 1:-1:2].max(-1)[: field.shape[0], : field.shape[1]]
        pure = pure > 0.99  # centres well inside one region
        assert pure.sum() >= 4
        np.testing.assert_array_equal(np.argmax(chosen, -1)[pure], out_region[pure])


@pytest.mark.parametrize("change,message", [
    ({"patch_size": 0}, "--patch_size=0 must be >= 1"),
    ({"rotations": -1}, "--rotations=-1 must be >= 0"),
    ({"mrf_weight": -1.0}, "--mrf_weight=-1.0 is invalid"),
    ({"normalization": "gram"}, "unknown --normalization=gram for mrf"),
    ({"mrf_layer_weights": (1.0,)}, "1 --mrf_layer_weights for 2 --mrf_layers"),
])
def test_bad_hyperparameters_name_the_fix(change, message):
    hp = dataclasses.replace(mrf.PRESETS["cnnmrf"][0], **change)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        mrf.validate(hp, FAST, 1)


def test_too_small_for_the_patches_says_so(vgg_weights):
    opts = dataclasses.replace(FAST, size=20)
    with pytest.raises(InputError, match="need at least 24 px"):
        _problem(vgg_weights, opts=opts)
