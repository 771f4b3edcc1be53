"""Deep Painterly Harmonization: its patch steps against numpy transcriptions of the authors'
cuda_utils.cu loops, its masked losses against numpy, the crop, and runs of the method."""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jstyle.ops import losses
from jstyle.ops import masks
from jstyle.ops import fields
from jstyle.engine import checkpoint as checkpoints
from jstyle.engine.session import Session
from jstyle.methods import harmonize
from jstyle.methods.harmonize import passes, regions


def _np_nnf(a, b, k, normalize, keep_borders):
    """cuda_utils.cu's patchmatch_r (normalize) and patchmatch (keep_borders), as loops."""
    h1, w1, _ = a.shape
    h2, w2, _ = b.shape
    r = k // 2
    out = np.zeros((h1, w1, 2), np.int32)
    for y1 in range(h1):
        for x1 in range(w1):
            best = -np.inf
            for y2 in range(h2):
                for x2 in range(w2):
                    if keep_borders and ((x2 < r and not x1 < r) or (y2 < r and not y1 < r) or
                                         (x2 > w2 - 1 - r and not x1 > w1 - 1 - r) or
                                         (y2 > h2 - 1 - r and not y1 > h1 - 1 - r)):
                        continue
                    dot = n1 = n2 = 0.0
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            p, q = (y1 + dy, x1 + dx), (y2 + dy, x2 + dx)
                            if 0 <= p[0] < h1 and 0 <= p[1] < w1 and 0 <= q[0] < h2 and \
                                    0 <= q[1] < w2:
                                dot += float(a[p] @ b[q])
                                n1 += float(a[p] @ a[p])
                                n2 += float(b[q] @ b[q])
                    score = dot / (np.sqrt(n1) * np.sqrt(n2) + 1e-9) if normalize else dot
                    if score > best:
                        best, out[y1, x1] = score, (y2, x2)
    return out


@pytest.mark.parametrize("normalize", [True, False])
def test_centred_field_matches_the_authors_loops(normalize):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 7, 3)).astype(np.float32)
    b = rng.normal(size=(6, 5, 3)).astype(np.float32)
    got = fields.nnf_centred(a, b, 3, normalize=normalize, keep_borders=not normalize,
                             budget_bytes=4 * 35 * 4)  # several chunks
    np.testing.assert_array_equal(np.asarray(got), _np_nnf(a, b, 3, normalize, not normalize))
    # a crop of the source, placed in its full map, finds the same matches
    crop = fields.nnf_centred(a[1:4, 2:6], b, 3, normalize=normalize,
                              keep_borders=not normalize, origin=(1, 2), full_shape=(5, 7))
    inner = _np_nnf(a, b, 3, normalize, not normalize)[2:3, 3:5]
    np.testing.assert_array_equal(np.asarray(crop)[1:2, 1:3], inner)


def _np_refine(field, guide, inside, k):
    """cuda_utils.cu's refineNNF_kernel, one iteration, as loops."""
    h, w = field.shape[:2]
    h2, w2 = guide.shape[:2]
    r = k // 2
    out = field.copy()
    for y1 in range(h):
        for x1 in range(w):
            if not inside[y1, x1]:
                continue
            best_d, best = np.inf, field[y1, x1]
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    if not (0 <= y1 + dy < h and 0 <= x1 + dx < w):
                        continue
                    cy, cx = field[y1 + dy, x1 + dx] - (dy, dx)
                    if not (r <= cx < w2 - r - 1 and r <= cy < h2 - r - 1):
                        continue
                    total, count = 0.0, 0
                    for ex in range(-r, r + 1):
                        for ey in range(-r, r + 1):
                            if not (0 <= y1 + ey < h and 0 <= x1 + ex < w):
                                continue
                            oy, ox = field[y1 + ey, x1 + ex] - (ey, ex)
                            if 0 <= ox < w2 and 0 <= oy < h2:
                                total += np.linalg.norm(guide[cy, cx] - guide[oy, ox])
                                count += 1
                    if total / count < best_d:
                        best_d, best = total / count, (cy, cx)
            out[y1, x1] = best
    return out


def _np_used(field, inside, shape, radius):
    """cuda_utils.cu's Ring2_kernel as loops."""
    used = np.zeros(shape, np.float32)
    for y1, x1 in zip(*np.nonzero(inside)):
        y2, x2 = field[y1, x1]
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if 0 <= y2 + dy < shape[0] and 0 <= x2 + dx < shape[1]:
                    used[y2 + dy, x2 + dx] = 1
    return used


def test_consistent_mapping_and_duplicate_suppression_match_the_authors_loops():
    rng = np.random.default_rng(5)
    h, w, h2, w2 = 9, 11, 10, 12
    field = np.stack([rng.integers(0, h2, (h, w)), rng.integers(0, w2, (h, w))], -1)
    guide = rng.integers(0, 4, (h2, w2, 3)).astype(np.float32) / 3  # ties happen
    inside = rng.random((h, w)) < 0.6
    got = np.asarray(fields.refine_field(field, guide, inside, 5, 1))
    want = _np_refine(field, guide, inside, 5)
    np.testing.assert_array_equal(got, want)
    assert (got != field).any()  # the refinement did something
    twice = np.asarray(fields.refine_field(field, guide, inside, 5, 2))
    np.testing.assert_array_equal(twice, _np_refine(want, guide, inside, 5))
    used = np.asarray(fields.used_positions(got, inside, (h2, w2), 1))
    np.testing.assert_array_equal(used, _np_used(got, inside, (h2, w2), 1))
    assert 0 < used.sum() < h2 * w2


# ---------------------------------------------------------------------------------------------
# The method's losses, its normalised gradients and its crop.


def test_masked_losses_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 7, 4)).astype(np.float32)
    t = rng.normal(size=(5, 7, 4)).astype(np.float32)
    m = rng.uniform(size=(5, 7)).astype(np.float32)
    mf = (x * m[..., None]).reshape(-1, 4)
    gram = mf.T @ mf / (4 * m.sum())
    np.testing.assert_allclose(losses.masked_gram_matrix(x, m), gram, rtol=1e-5)
    np.testing.assert_allclose(passes._style_loss(x, m, np.eye(4, dtype=np.float32)),
                               np.mean((gram - np.eye(4)) ** 2), rtol=1e-5)
    np.testing.assert_allclose(passes._content_loss(x, m, (t, np.float32(99.0))),
                               np.sum(((x - t) * m[..., None]) ** 2) / 99.0, rtol=1e-5)
    image = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.float32)
    core = image[:-1, :-1]
    tv = 0.5 * np.sum((((core - image[:-1, 1:]) ** 2 + (core - image[1:, :-1]) ** 2)
                       * m[:5, :7, None]))
    np.testing.assert_allclose(passes._tv_loss(image, np.pad(m, ((0, 1), (0, 1)))), tv,
                               rtol=1e-5)
    # histogram: the inside positions' ranks read the sorted style values (distinct values)
    style = np.sort(rng.normal(size=(11, 4)).astype(np.float32), axis=0)
    padded = np.concatenate([style, np.zeros((24, 4), np.float32)])
    inside = m > 0.4
    ranks = np.argsort(np.argsort(np.where(inside[..., None], x, np.inf).reshape(-1, 4), 0), 0)
    n = inside.sum()
    want = np.stack([np.interp((ranks[:, c] + 0.5) * 11 / n - 0.5, np.arange(11), style[:, c])
                     for c in range(4)], -1).reshape(5, 7, 4)
    loss = np.sum(((x - want) ** 2)[inside]) / (n * 4)
    np.testing.assert_allclose(passes._hist_loss(x, np.where(inside, 0.5, 0.05),
                                                     (padded, np.float32(11))), loss, rtol=1e-4)


def test_the_codes_gradient_is_each_terms_unit_gradient_masked_at_its_layer():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(6, 5, 3)), jnp.float32)
    m = jnp.asarray(rng.uniform(size=(6, 5)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(6, 5, 3)), jnp.float32)
    targets = ((jnp.zeros((6, 5, 3)), jnp.float32(90.0)), jnp.eye(3))
    weights = (jnp.float32(2.0), jnp.float32(7.0))
    tap = passes._tap((passes._content_loss, passes._style_loss))
    out, back = jax.vjp(lambda v: tap(v, m, weights, targets), x)
    np.testing.assert_array_equal(out, x)
    unit = lambda v: v / (jnp.linalg.norm(v) + 1e-8)
    gs = jax.grad(passes._style_loss)(x, m, targets[1])
    gc = jax.grad(passes._content_loss)(x, m, targets[0])
    want = m[..., None] * (m[..., None] * (g + 7.0 * unit(gs)) + 2.0 * unit(gc))
    np.testing.assert_allclose(back(g)[0], want, rtol=1e-5, atol=1e-6)


def _inputs(h, w, top, left, side, seed=0):
    rng = np.random.default_rng(seed)
    smooth = lambda: np.asarray(Image.fromarray((rng.uniform(size=(h // 8, w // 8, 3)) * 255)
                                                .astype(np.uint8)).resize((w, h)), np.float32)
    painting, composite = smooth(), smooth()
    tight = np.zeros((h, w), bool)
    tight[top:top + side, left:left + side] = True
    composite = np.where(tight[..., None], composite, painting)
    return harmonize.Working(composite, painting, tight, masks.dilate(tight))


@pytest.mark.parametrize("which", ["pass1", "pass2", "pass2 normalized"])
def test_a_crop_gives_the_whole_images_loss_and_gradient_inside_the_mask(tiny_weights, which):
    hp = harmonize.HarmonizeParams()
    params, convention = tiny_weights.params, tiny_weights.convention
    if which == "pass1":
        inputs = _inputs(64, 288, 20, 20, 16)
        box = harmonize.crop_box(inputs.loose, "relu5_1")
        make = lambda b: harmonize.pass1_data(inputs, b, hp, params, convention)
    else:
        inputs = _inputs(96, 200, 30, 30, 24)
        box = harmonize.crop_box(inputs.loose, "relu4_1")
        used = np.zeros((12, 25), np.float32)
        used[3:9, 5:20] = 1
        make = lambda b: harmonize.pass2_data(inputs, b, hp, used, params, convention)
    assert box.right - box.left < inputs.loose.shape[1]  # a real crop
    terms = harmonize.loss_terms_normalized if "normalized" in which else harmonize.loss_terms
    rng = np.random.default_rng(4)
    image = np.clip(inputs.composite + rng.normal(0, 20, inputs.composite.shape), 0, 255
                    ).astype(np.float32)
    evaluate = jax.jit(lambda v, d: (terms(v, d, convention), jax.grad(
        lambda u: terms(u, d, convention)["total"])(v)))

    def at(b):
        value, grad = evaluate(jnp.asarray(harmonize.crop_of(image, b)), make(b))
        return {k: float(v) for k, v in value.items()}, np.asarray(grad)

    (full_terms, full_grad), (crop_terms, crop_grad) = at(harmonize.whole(image.shape)), at(box)
    for name in ("content", "style", "hist", "tv", "total"):
        np.testing.assert_allclose(crop_terms[name], full_terms[name], rtol=2e-4, err_msg=name)
    inside = harmonize.crop_of(inputs.loose, box)
    full_inside = harmonize.crop_of(full_grad, box)[inside]
    assert np.abs(full_inside).max() > 0
    np.testing.assert_allclose(crop_grad[inside], full_inside,
                               atol=2e-4 * np.abs(full_inside).max())


def test_the_command_paints_the_object_in_and_leaves_the_rest_bit_for_bit(tmp_path, vgg_weights):
    inputs = _inputs(72, 96, 24, 36, 24, seed=7)
    Image.fromarray(inputs.composite.astype(np.uint8)).save(tmp_path / "composite.png")
    Image.fromarray(inputs.painting.astype(np.uint8)).save(tmp_path / "painting.png")
    Image.fromarray((inputs.tight * 255).astype(np.uint8)).resize((48, 36)).save(
        tmp_path / "mask.jpg", quality=70)  # smaller and with JPEG noise: resized, thresholded
    done = subprocess.run(
        [sys.executable, "-m", "jstyle", "--method=harmonize", "--content=composite.png",
         "--style=painting.png", "--mask=mask.jpg", "--output=out.png", "--size=96",
         "--pass1_steps=3", "--steps=3", "--postprocess=guided"],
        cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "jstyle: wrote out.png, out_pass1.png (" in done.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["images"] == {"output": "out.png", "pass1": "out_pass1.png"}
    assert [p["steps"] for p in record["passes"]] == [3, 3]
    assert all(p["final_loss"]["total"] < p["initial_loss"]["total"] for p in record["passes"])
    assert record["passes"][1]["weights"]["hist"] > 0 and record["mask"]
    composite = np.asarray(Image.open(tmp_path / "composite.png"))
    for name in ("out.png", "out_pass1.png"):
        out = np.asarray(Image.open(tmp_path / name))
        np.testing.assert_array_equal(out[~inputs.loose], composite[~inputs.loose])
        assert np.abs(out[inputs.tight].astype(int) - composite[inputs.tight]).max() > 0


def test_the_guided_filter_is_the_per_window_ridge_fit_averaged():
    """He et al.'s colour guided filter against its definition: a ridge fit p ~ a . I + b in
    every window (clipped at the borders), each pixel averaging the fits of its windows."""
    from jstyle import image
    rng = np.random.default_rng(6)
    guide, source = rng.uniform(size=(7, 9, 3)), rng.uniform(size=(7, 9))
    r, eps = 1, 0.01
    fits = {}
    for y in range(7):
        for x in range(9):
            win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
            i, p = guide[win].reshape(-1, 3), source[win].reshape(-1)
            cov = np.cov(i.T, bias=True) + eps * np.eye(3)
            a = np.linalg.solve(cov, ((i - i.mean(0)) * (p - p.mean())[:, None]).mean(0))
            fits[y, x] = a, p.mean() - a @ i.mean(0)
    want = np.zeros((7, 9))
    for y in range(7):
        for x in range(9):
            near = [fits[v, u] for v in range(max(0, y - r), min(7, y + r + 1))
                    for u in range(max(0, x - r), min(9, x + r + 1))]
            want[y, x] = np.mean([a @ guide[y, x] + b for a, b in near])
    np.testing.assert_allclose(image.guided_filter(guide, source, r, eps), want, rtol=1e-9)


def test_a_checkpoint_in_pass_2_resumes_to_the_same_images(tiny_weights, tmp_path):
    inputs = _inputs(64, 80, 20, 28, 20, seed=8)
    hp = harmonize.HarmonizeParams(pass1_steps=2)
    opts = dataclasses.replace(harmonize.PRESETS["code"][1], size=80, steps=4, save_every=2,
                               print_every=0)
    checkpoint = tmp_path / "out.ckpt.npz"
    run = lambda: harmonize.run(
        jax.random.key(opts.seed),
        harmonize.Inputs(content=inputs.composite / 255, styles=[inputs.painting / 255],
                         mask=inputs.tight[..., None] * np.ones(3), dilated_mask=None),
        hp, opts, tiny_weights,
        session=Session(output=tmp_path / "out.png",
                        progress=False))
    first = run()  # leaves the checkpoint of pass 2's step 2 behind (the command deletes it)
    saved = checkpoints.read(checkpoint)
    position = saved.record["position"]
    assert position["level"] == 1 and position["step"] == 4 and len(position["passes"]) == 1
    np.testing.assert_allclose(saved.arrays["pass1"] / 255, first.images["pass1"], atol=1e-6)
    again = run()
    assert [p["steps"] for p in again.record["passes"]] == [2, 4]
    for name in ("output", "pass1"):
        np.testing.assert_allclose(again.images[name], first.images[name], atol=1e-6)


def test_a_mask_with_a_transparent_background_marks_only_its_opaque_pixels(tmp_path):
    """An exported selection: white everywhere, opaque only over the object. Read as a picture
    (over white) it would mark the whole painting."""
    rgba = np.full((48, 64, 4), 255, np.uint8)
    rgba[..., 3] = 0
    rgba[10:20, 30:40, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "selection.png")
    mask = regions._mask_image(None, str(tmp_path / "selection.png"))
    composite = np.full((48, 64, 3), 0.5, np.float32)
    inputs = harmonize.prepare_inputs(composite, composite, mask, None, 64)
    assert inputs.tight.sum() == 100 and inputs.tight[10:20, 30:40].all()
