"""Deep Painterly Harmonization: its patch steps against numpy transcriptions of the authors'
cuda_utils.cu loops, its masked losses against numpy, the crop, and runs of the method."""

import numpy as np
import pytest

from jstyle import patches


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
    got = patches.nnf_centred(a, b, 3, normalize=normalize, keep_borders=not normalize,
                              budget_bytes=4 * 35 * 4)  # several chunks
    np.testing.assert_array_equal(np.asarray(got), _np_nnf(a, b, 3, normalize, not normalize))
    # a crop of the source, placed in its full map, finds the same matches
    crop = patches.nnf_centred(a[1:4, 2:6], b, 3, normalize=normalize,
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
    got = np.asarray(patches.refine_field(field, guide, inside, 5, 1))
    want = _np_refine(field, guide, inside, 5)
    np.testing.assert_array_equal(got, want)
    assert (got != field).any()  # the refinement did something
    twice = np.asarray(patches.refine_field(field, guide, inside, 5, 2))
    np.testing.assert_array_equal(twice, _np_refine(want, guide, inside, 5))
    used = np.asarray(patches.used_positions(got, inside, (h2, w2), 1))
    np.testing.assert_array_equal(used, _np_used(got, inside, (h2, w2), 1))
    assert 0 < used.sum() < h2 * w2
