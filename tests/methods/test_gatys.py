"""Gatys et al. on the real VGG-19 weights at tiny sizes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import image, methods
from jstyle.ops import masks
from jstyle.engine import checkpoint, options
from jstyle.engine.session import Session
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.methods import gatys

RNG = np.random.default_rng(0)


def _image(h, w, seed):
    """A smooth random colour field in [0, 1]: structured enough for VGG, cheap to make."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    from jstyle import image
    return image.resize(small, h, w)


CONTENT, STYLE = _image(40, 56, 1), _image(64, 64, 2)
FAST = gatys.RunOptions(size=48, steps=8, print_every=4)


def _run(content, styles, hp, opts, weights, key=None, *, labels=None, init=None, output=None,
         method=gatys):
    """method.run on the new API: the key first (default: the options' seed), the inputs
    together, a quiet session (keeping checkpoints and snapshots beside `output`)."""
    key = jax.random.key(opts.seed) if key is None else key
    session = Session(output=output, progress=False)
    return method.run(key, method.Inputs(content, styles, labels=labels, init=init), hp, opts,
                      weights, session=session)


def _snapshots(folder, stem="run"):
    """The steps of the snapshots STEM_<step>.png written in `folder`."""
    return sorted(int(p.stem[len(stem) + 1:]) for p in folder.glob(f"{stem}_*.png"))


def test_registered():
    assert methods.get("gatys") is gatys and callable(gatys.run)
    assert set(gatys.PRESETS) == {"jstyle", "classic", "neural-style"}


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("preset", ["jstyle", "neural-style"])
def test_tiny_run_lowers_the_loss(vgg_weights, optimizer, preset):
    hp, _ = gatys.PRESETS[preset]
    opts = dataclasses.replace(FAST, optimizer=optimizer, init="noise", init_noise=20.0)
    result = _run(CONTENT, [STYLE], hp, opts, vgg_weights, jax.random.key(0))
    rec = result.record
    assert rec["final_loss"]["total"] < 0.8 * rec["initial_loss"]["total"]
    assert rec["steps"] == 8 and rec["stopped"] == "steps"
    assert result.image.shape == (34, 48, 3)
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert [h["step"] for h in result.history] == [4, 8]


def test_same_key_same_output_other_key_other_output(vgg_weights):
    opts = dataclasses.replace(FAST, steps=2, init="noise")
    hp = gatys.GatysParams()
    run = lambda seed: _run(CONTENT, [STYLE], hp, opts, vgg_weights, jax.random.key(seed)).image
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def _data(vgg_weights, hp, content, styles, blend):
    params = vgg.prepare(vgg_weights.params)
    scales = gatys.layer_scales(vgg_weights, hp)
    targets = gatys.compute_targets(params, scales, content, styles, blend, hp,
                                    vgg_weights.convention)
    return gatys.Data(params, scales, targets, hp)


def test_loss_terms_plain_and_jit_agree_and_gradient_is_finite(tiny_weights):
    hp = gatys.GatysParams(tv_weight=0.01)
    content = jnp.asarray(CONTENT[:33, :35] * 255)
    data = _data(tiny_weights, hp, content, [jnp.asarray(STYLE * 255)], (1.0,))
    x = content + 10.0 * jnp.asarray(RNG.normal(size=content.shape), jnp.float32)
    plain = gatys.loss_terms(x, data, tiny_weights.convention)
    jitted = jax.jit(lambda x, d: gatys.loss_terms(x, d, tiny_weights.convention))(x, data)
    for k in plain:
        np.testing.assert_allclose(jitted[k], plain[k], rtol=1e-4)
    np.testing.assert_allclose(plain["total"], plain["content"] + plain["style"] + plain["tv"]
                               + plain["hist"], rtol=1e-6)
    grad = jax.grad(lambda x: gatys.objective(x, data, tiny_weights.convention))(x)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_style_blend_is_a_weighted_gram_target(vgg_weights):
    hp = gatys.GatysParams()
    content, s1 = jnp.asarray(CONTENT * 255), jnp.asarray(STYLE * 255)
    s2 = jnp.asarray(_image(48, 40, 5) * 255)
    both = _data(vgg_weights, hp, content, [s1, s2], (0.25, 0.75))[2]
    one = _data(vgg_weights, hp, content, [s1], (1.0,))[2]
    two = _data(vgg_weights, hp, content, [s2], (1.0,))[2]
    for layer in hp.style_layers:
        np.testing.assert_allclose(both.style[layer],
                                   0.25 * one.style[layer] + 0.75 * two.style[layer], rtol=1e-4)


def test_resume_continues_exactly(vgg_weights, tmp_path):
    opts = dataclasses.replace(FAST, steps=6, save_every=3, print_every=0)
    hp = gatys.GatysParams()
    key = jax.random.key(0)
    full = _run(CONTENT, [STYLE], hp, opts, vgg_weights, key)
    output = tmp_path / "run.png"
    ckpt = tmp_path / "run.ckpt.npz"
    assert Session(output=output).checkpoint == ckpt
    _run(CONTENT, [STYLE], hp, dataclasses.replace(opts, steps=3, save_every=3),
         vgg_weights, key, output=output)
    assert not ckpt.exists()  # the last step writes the output, not a checkpoint
    assert _snapshots(tmp_path) == []
    _run(CONTENT, [STYLE], hp, opts, vgg_weights, key, output=output)
    assert ckpt.exists() and _snapshots(tmp_path) == [3]
    resumed = _run(CONTENT, [STYLE], hp, opts, vgg_weights, key, output=output)
    assert resumed.record["resumed_from_step"] == 3
    np.testing.assert_allclose(resumed.image, full.image, atol=1e-5)


def test_validation_errors():
    hp, opts = gatys.GatysParams(), gatys.RunOptions()
    bad = [
        (dataclasses.replace(hp, style_layers=("relu9_1",)), opts, "unknown VGG-19 layer"),
        (dataclasses.replace(hp, style_weight=-1.0), opts, "style_weight=-1.0 is invalid"),
        (dataclasses.replace(hp, tv_weight=float("nan")), opts, "tv_weight=nan is invalid"),
        (hp, dataclasses.replace(opts, style_blend_weights=(1.0,)), "1 --style_blend_weights"),
        (dataclasses.replace(hp, content_layer_weights=(1.0, 2.0)), opts, "content_layer_w"),
        (hp, dataclasses.replace(opts, steps=0), "--steps=0"),
        (dataclasses.replace(hp, hist_layer_weights=(1.0,)), opts, "1 --hist_layer_weights"),
        (hp, dataclasses.replace(opts, preserve_colors="lab"), "--preserve_colors=lab"),
        (hp, dataclasses.replace(opts, pyramid_ratio=1.0), "--pyramid_ratio=1.0 must be > 1"),
        (hp, dataclasses.replace(opts, pyramid_levels=2, pyramid_steps=(5,)), "--pyramid_steps"),
        (hp, dataclasses.replace(opts, unmatched="skip"), "--unmatched=skip"),
    ]
    for h, o, message in bad:
        with pytest.raises(InputError, match=message):
            gatys.validate(h, o, num_styles=2)


def test_too_small_for_the_deepest_layer(vgg_weights):
    with pytest.raises(InputError, match="needs at least 16 px"):
        _run(CONTENT, [STYLE], gatys.GatysParams(), dataclasses.replace(FAST, size=20),
             vgg_weights, jax.random.key(0))


def _two_regions(h, w, split, left, right):
    """A label map: colour `left` left of column `split`, `right` from it on."""
    m = np.zeros((h, w, 3), np.float32)
    m[:, :split], m[:, split:] = left, right
    return m


RED, BLUE = (0.9, 0.1, 0.1), (0.1, 0.2, 0.9)


def _terms(vgg_weights, hp, opts, labels):
    problem = gatys.setup(CONTENT, [STYLE], hp, opts, vgg_weights, jax.random.key(0),
                          labels=labels)
    return problem.terms(jnp.asarray(problem.init) + 3.0, problem.data)


def test_one_region_everywhere_is_the_plain_objective(vgg_weights):
    hp = gatys.GatysParams(hist_weight=10.0, tv_weight=0.01)
    opts = dataclasses.replace(FAST, init="noise")
    labels = masks.match(_two_regions(40, 56, 56, RED, RED), [_two_regions(64, 64, 64, RED, RED)])
    assert len(labels.colors) == 1
    plain, masked = _terms(vgg_weights, hp, opts, None), _terms(vgg_weights, hp, opts, labels)
    for k in plain:
        np.testing.assert_allclose(masked[k], plain[k], rtol=2e-4, err_msg=k)
    assert float(plain["hist"]) > 0


def test_regions_take_their_style_only_from_the_matching_region(vgg_weights):
    """Left of the content is red-labelled, right blue; the style's red region is a red texture,
    its blue region a blue one: after a short run the output's left is redder than its right,
    and without masks it is not."""
    h, w = 48, 64
    rng = np.random.default_rng(0)
    texture = image.resize(rng.uniform(size=(12, 16)).astype(np.float32)[..., None], h, w)[..., 0]
    style = np.zeros((h, w, 3), np.float32)
    style[:, :32] = np.stack([0.5 + 0.5 * texture[:, :32], 0.1 * texture[:, :32],
                              0.1 * texture[:, :32]], -1)
    style[:, 32:] = np.stack([0.1 * texture[:, 32:], 0.1 * texture[:, 32:],
                              0.5 + 0.5 * texture[:, 32:]], -1)
    content = np.full((h, w, 3), 0.5, np.float32)
    labels = masks.match(_two_regions(h, w, 32, RED, BLUE), [_two_regions(h, w, 32, RED, BLUE)])
    opts = dataclasses.replace(FAST, size=64, steps=30, print_every=0)
    hp = gatys.GatysParams(style_weight=100.0)

    def redness(labels):
        out = _run(content, [style], hp, opts, vgg_weights, jax.random.key(0),
                   labels=labels).image
        red_minus_blue = out[..., 0] - out[..., 2]
        return red_minus_blue[:, 4:28].mean(), red_minus_blue[:, 36:60].mean()

    left, right = redness(labels)
    assert left > 0.05 and right < -0.05, (left, right)
    left_plain, right_plain = redness(None)
    assert abs(left_plain - right_plain) < 0.5 * (left - right), (left, right, left_plain,
                                                                  right_plain)


def test_remat_gives_the_same_loss_and_gradient(tiny_weights):
    hp = gatys.GatysParams(hist_weight=1.0)
    content = jnp.asarray(CONTENT * 255)
    data = _data(tiny_weights, hp, content, [jnp.asarray(STYLE * 255)], (1.0,))
    x = content + 10.0 * jnp.asarray(RNG.normal(size=content.shape), jnp.float32)
    grads = [jax.jit(jax.value_and_grad(lambda x: gatys.objective(
        x, data, tiny_weights.convention, remat=remat)))(x) for remat in (False, True)]
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-5)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-3, atol=1e-6)


def test_pyramid_runs_coarse_to_fine_and_resumes_at_its_level(vgg_weights, tmp_path):
    opts = dataclasses.replace(FAST, size=64, pyramid_levels=2, pyramid_steps=(4, 3),
                               print_every=2, save_every=2)
    hp = gatys.GatysParams()
    key = jax.random.key(0)
    assert options.pyramid(opts) == [(32, 4), (64, 3)]
    full = _run(CONTENT, [STYLE], hp, opts, vgg_weights, key)
    assert full.image.shape == (46, 64, 3) and full.record["steps"] == 7
    assert [(h["step"], h["level"]) for h in full.history] == [(2, 0), (4, 0), (6, 1), (7, 1)]
    assert full.record["final_loss"]["total"] < full.record["initial_loss"]["total"]
    # interrupted after the snapshot at step 2 of level 1 (global step 6): resume from it
    output, ckpt = tmp_path / "run.png", tmp_path / "run.ckpt.npz"
    _run(CONTENT, [STYLE], hp, opts, vgg_weights, key, output=output)
    assert _snapshots(tmp_path) == [2, 6]  # the level-0 snapshot at 4 is its last step: none
    assert optimize_level(ckpt) == 1
    resumed = _run(CONTENT, [STYLE], hp, opts, vgg_weights, key, output=output)
    assert resumed.record["resumed_from_step"] == 6
    np.testing.assert_allclose(resumed.image, full.image, atol=1e-5)


def optimize_level(path):
    return checkpoint.read(path).record["position"]["level"]


@pytest.mark.parametrize("mode", ["luminance", "original", "match"])
def test_preserve_colors_keeps_the_content_colours(vgg_weights, mode):
    opts = dataclasses.replace(FAST, steps=3, print_every=0, preserve_colors=mode)
    content = CONTENT * 0.5 + 0.25  # chroma well inside the gamut
    result = _run(content, [STYLE], gatys.GatysParams(), opts, vgg_weights, jax.random.key(0))
    out_uv = image.rgb_to_yuv(result.image)[..., 1:]
    content_uv = image.rgb_to_yuv(image.resize(content, *result.image.shape[:2]))[..., 1:]
    if mode == "match":  # the style was recoloured: the output's colours are the content's
        np.testing.assert_allclose(out_uv.mean((0, 1)), content_uv.mean((0, 1)), atol=0.03)
    else:
        np.testing.assert_allclose(out_uv, content_uv, atol=0.02)


def test_bfloat16_run_lowers_the_loss_and_records_its_precision(tiny_weights):
    opts = dataclasses.replace(FAST, precision="bfloat16", init="noise", init_noise=20.0)
    result = _run(CONTENT, [STYLE], gatys.GatysParams(), opts, tiny_weights)
    assert result.record["precision"] == "bfloat16"
    assert result.record["final_loss"]["total"] < 0.8 * result.record["initial_loss"]["total"]
    auto = _run(CONTENT, [STYLE], gatys.GatysParams(), dataclasses.replace(FAST, steps=1),
                tiny_weights)
    assert auto.record["precision"] == (  # auto: by the backend
        "float32" if jax.default_backend() == "cpu" else "bfloat16")


@pytest.mark.parametrize("option", [{"tile": 2}, {"precision": "bfloat16"}])
def test_methods_off_the_gatys_objective_refuse_tiles_and_bfloat16(tiny_weights, option):
    from jstyle.methods import mrf
    hp, opts = mrf.PRESETS["cnnmrf"]
    opts = dataclasses.replace(opts, size=48, steps=1, **option)
    with pytest.raises(InputError, match="--tile and --precision=bfloat16"):
        _run(CONTENT, [STYLE], hp, opts, tiny_weights, method=mrf)
