"""Gatys et al. on the real VGG-19 weights at tiny sizes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import vgg
from jstyle.errors import InputError
from jstyle.methods import REGISTRY, gatys

RNG = np.random.default_rng(0)


def _image(h, w, seed):
    """A smooth random colour field in [0, 1]: structured enough for VGG, cheap to make."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    from jstyle import image
    return image.resize(small, h, w)


CONTENT, STYLE = _image(40, 56, 1), _image(64, 64, 2)
FAST = gatys.RunOptions(size=48, steps=8, print_every=4)


def test_registered():
    assert REGISTRY["gatys"].run is not None
    assert set(gatys.PRESETS) == {"jstyle", "neural-style"}


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("preset", ["jstyle", "neural-style"])
def test_tiny_run_lowers_the_loss(vgg_weights, optimizer, preset):
    hp, _ = gatys.PRESETS[preset]
    opts = dataclasses.replace(FAST, optimizer=optimizer, init="noise", init_noise=20.0)
    result = gatys.run(CONTENT, [STYLE], hp, opts, vgg_weights, jax.random.key(0),
                       progress=False)
    rec = result.record
    assert rec["final_loss"]["total"] < 0.8 * rec["initial_loss"]["total"]
    assert rec["steps"] == 8 and rec["stopped"] == "steps"
    assert result.image.shape == (34, 48, 3)
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert [h["step"] for h in result.history] == [4, 8]


def test_same_key_same_output_other_key_other_output(vgg_weights):
    opts = dataclasses.replace(FAST, steps=2, init="noise")
    hp = gatys.GatysParams()
    run = lambda seed: gatys.run(CONTENT, [STYLE], hp, opts, vgg_weights, jax.random.key(seed),
                                 progress=False).image
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def _data(vgg_weights, hp, content, styles, blend):
    params = vgg.prepare(vgg_weights.params)
    scales = gatys.layer_scales(vgg_weights, hp)
    targets = gatys.compute_targets(params, scales, content, styles, blend, hp,
                                    vgg_weights.convention)
    return params, scales, targets, hp


def test_loss_terms_plain_and_jit_agree_and_gradient_is_finite(vgg_weights):
    hp = gatys.GatysParams(tv_weight=0.01)
    content = jnp.asarray(CONTENT[:33, :35] * 255)
    data = _data(vgg_weights, hp, content, [jnp.asarray(STYLE * 255)], (1.0,))
    x = content + 10.0 * jnp.asarray(RNG.normal(size=content.shape), jnp.float32)
    plain = gatys.loss_terms(x, *data, vgg_weights.convention)
    jitted = jax.jit(lambda x, d: gatys.loss_terms(x, *d, vgg_weights.convention))(x, data)
    for k in plain:
        np.testing.assert_allclose(jitted[k], plain[k], rtol=1e-4)
    np.testing.assert_allclose(plain["total"], plain["content"] + plain["style"] + plain["tv"],
                               rtol=1e-6)
    grad = jax.grad(lambda x: gatys.objective(x, data, vgg_weights.convention))(x)
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
    full = gatys.run(CONTENT, [STYLE], hp, opts, vgg_weights, key, progress=False)
    ckpt = tmp_path / "run.ckpt.npz"
    snaps = []
    gatys.run(CONTENT, [STYLE], hp, dataclasses.replace(opts, steps=3, save_every=3),
              vgg_weights, key, checkpoint=ckpt, progress=False)
    assert not ckpt.exists()  # the last step writes the output, not a checkpoint
    gatys.run(CONTENT, [STYLE], hp, opts, vgg_weights, key, checkpoint=ckpt,
              snapshot=lambda step, img: snaps.append(step), progress=False)
    assert ckpt.exists() and snaps == [3]
    resumed = gatys.run(CONTENT, [STYLE], hp, opts, vgg_weights, key, checkpoint=ckpt,
                        progress=False)
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
    ]
    for h, o, message in bad:
        with pytest.raises(InputError, match=message):
            gatys.validate(h, o, num_styles=2)


def test_too_small_for_the_deepest_layer(vgg_weights):
    with pytest.raises(InputError, match="needs at least 16 px"):
        gatys.run(CONTENT, [STYLE], gatys.GatysParams(), dataclasses.replace(FAST, size=20),
                  vgg_weights, jax.random.key(0), progress=False)
