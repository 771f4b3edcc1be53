"""Label maps: colour snapping, matching across maps, propagation to layer resolutions."""

import io

import numpy as np
import pytest
from PIL import Image

from jstyle.ops import masks
from jstyle.nets import vgg
from jstyle.errors import InputError

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 210)


def _label_map(h, w, colors, split):
    """A map painted with colors[0] left of column `split` and colors[1] right of it, as
    float[H, W, 3] in [0, 1]."""
    m = np.zeros((h, w, 3), np.float32)
    m[:, :split] = colors[0]
    m[:, split:] = colors[1]
    return m / 255.0


def _jpeg(img, quality=60):
    """Round trip through a lossy JPEG with a blurred (anti-aliased) edge."""
    pil = Image.fromarray(np.uint8(np.round(img * 255))).resize(
        (img.shape[1] * 2, img.shape[0] * 2), Image.Resampling.BILINEAR).resize(
        (img.shape[1], img.shape[0]), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255.0


def test_jpeg_and_antialiased_colours_snap_to_the_flat_ones():
    clean = _label_map(41, 57, [RED, GREEN], 20)
    noisy = _jpeg(clean)
    assert len(np.unique(noisy.reshape(-1, 3), axis=0)) > 2  # really noisy
    colors = masks.dominant_colors(noisy)
    assert len(colors) == 2
    np.testing.assert_allclose(np.sort(colors, 0), np.sort(np.array([RED, GREEN], float), 0),
                               atol=12)
    labels = masks.snap(noisy, colors)
    truth = masks.snap(clean, colors)
    assert np.mean(labels == truth) > 0.97  # only the blurred edge columns may differ
    np.testing.assert_array_equal(labels[:, :18], truth[:, :18])
    np.testing.assert_array_equal(labels[:, 22:], truth[:, 22:])


def test_one_hot_and_layer_masks_line_up_with_the_features():
    labels = masks.snap(_label_map(37, 51, [RED, GREEN], 17), np.array([RED, GREEN], float))
    onehot = masks.one_hot(labels, 2, 75, 103)  # to a larger image size, nearest neighbour
    assert onehot.shape == (2, 75, 103)
    np.testing.assert_array_equal(onehot.sum(0), 1.0)
    for layer, pools in (("relu1_1", 0), ("relu2_1", 1), ("relu4_1", 3), ("relu5_1", 4)):
        m = masks.at_layer(onehot, pools)
        h, w = 75 >> pools, 103 >> pools  # VGG's floor pooling
        assert m.shape == (2, h, w), layer
        np.testing.assert_allclose(m.sum(0), 1.0, atol=1e-6)
        assert 0.0 <= m.min() and m.max() <= 1.0
    assert vgg.min_size(["relu5_1"]) == 16


def test_match_pairs_regions_by_colour_and_marks_what_each_style_has():
    content = _label_map(20, 30, [RED, GREEN], 10)
    style_a = _jpeg(_label_map(24, 24, [GREEN, RED], 12))  # same colours, other layout
    style_b = _label_map(16, 16, [GREEN, BLUE], 8)  # BLUE is not in the content
    labels = masks.match(content, [style_a, style_b])
    red, green = [int(np.argmin(np.linalg.norm(labels.colors - np.array(c), axis=1)))
                  for c in (RED, GREEN)]
    assert len(labels.colors) == 2 and labels.present[0].all()
    assert labels.present[1, green] and not labels.present[1, red]
    assert (labels.styles[0][:, :10] == green).all() and (labels.styles[0][:, 14:] == red).all()
    assert (labels.styles[1][:, 8:] == -1).all()  # BLUE belongs to no content region


def test_a_content_region_missing_from_every_style_is_a_clear_error():
    content = _label_map(20, 30, [RED, BLUE], 10)
    style = _label_map(20, 30, [RED, GREEN], 10)
    with pytest.raises(InputError, match=r"#1428d2.*no style mask.*--unmatched=global"):
        masks.match(content, [style])
    labels = masks.match(content, [style], unmatched="global")
    assert labels.present.tolist() == [[True, False]] or labels.present.tolist() == [[False, True]]


def test_sem_path_follows_neural_doodle():
    assert str(masks.sem_path("/a/b/photo.jpg")) == "/a/b/photo_sem.png"
