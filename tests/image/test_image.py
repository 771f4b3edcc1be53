"""Image loading of every common mode, EXIF rotation, resizing, atomic saving, colours."""

import os

import numpy as np
import pytest
from PIL import Image

from jstyle import image
from jstyle.errors import InputError

RGB = (np.random.default_rng(0).uniform(size=(5, 7, 3)) * 255).astype(np.uint8)


def _roundtrip(tmp_path, img, name="x.png", **save):
    path = tmp_path / name
    img.save(path, **save)
    return image.load(path)


def test_rgb(tmp_path):
    out = _roundtrip(tmp_path, Image.fromarray(RGB))
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_allclose(out, RGB / 255.0, atol=1e-6)


def test_grayscale_and_palette(tmp_path):
    gray = _roundtrip(tmp_path, Image.fromarray(RGB[..., 0]))
    np.testing.assert_allclose(gray, np.repeat(RGB[..., :1], 3, 2) / 255.0, atol=1e-6)
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = _roundtrip(tmp_path, pal)
    np.testing.assert_allclose(out, np.asarray(pal.convert("RGB")) / 255.0, atol=1e-6)


def test_rgba_composites_over_white(tmp_path):
    rgba = np.dstack([RGB, np.zeros(RGB.shape[:2], np.uint8)])
    rgba[0, 0, 3] = 255
    out = _roundtrip(tmp_path, Image.fromarray(rgba, "RGBA"))
    np.testing.assert_allclose(out[0, 0], RGB[0, 0] / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[1:, 1:], 1.0)


def test_16_bit(tmp_path):
    values = np.array([[0, 1000, 65535]], np.uint16)
    img = Image.new("I;16", (3, 1))
    img.frombytes(values.astype("<u2").tobytes())
    out = _roundtrip(tmp_path, img)
    np.testing.assert_allclose(out[..., 0], values / 65535.0, atol=1e-6)


def test_32_bit_integer_tiff_spans_its_whole_range(tmp_path):
    """A signed 32-bit TIFF tops at 2**31 - 1 (not clipped at 65535)."""
    values = np.array([[0, 70000, 2 ** 30, 2 ** 31 - 1]], np.int32)
    out = _roundtrip(tmp_path, Image.fromarray(values, "I"), "x.tif")
    np.testing.assert_allclose(out[..., 0], values / (2 ** 31 - 1), atol=1e-6)


def test_a_transparent_mask_pixel_is_not_selected(tmp_path):
    """Masks composite alpha over black (an exported selection), pictures over white."""
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the top row opaque
    rgba[0, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "sel.png")
    mask = image.load(tmp_path / "sel.png", background=image.BLACK)
    np.testing.assert_allclose(mask[0], 1.0)
    np.testing.assert_allclose(mask[1], 0.0)
    np.testing.assert_allclose(image.load(tmp_path / "sel.png"), 1.0)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.fromarray(RGB).convert("CMYK")
    out = _roundtrip(tmp_path, cmyk, "x.jpg", quality=100)
    np.testing.assert_allclose(out, np.asarray(cmyk.convert("RGB")) / 255.0, atol=0.1)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = image.load(tmp_path / "r.jpg")
    assert out.shape == (7, 5, 3)


def test_resize_to_edge_keeps_aspect():
    out = image.resize_to_edge(np.zeros((300, 451, 3), np.float32), 256)
    assert out.shape == (170, 256, 3)


def test_save_is_atomic_and_exact(tmp_path):
    path = tmp_path / "o.png"
    image.save(path, RGB / 255.0)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), RGB)
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(InputError, match="choose a writable"):
        image.save(tmp_path / "missing" / "o.png", RGB / 255.0)


def test_keep_colors_takes_luminance_from_styled_and_chroma_from_content():
    rng = np.random.default_rng(1)
    content, styled = rng.uniform(0.2, 0.8, (2, 4, 6, 3)).astype(np.float32)
    out = image.keep_colors(styled, content)
    yuv_out, yuv_c, yuv_s = image.rgb_to_yuv(out), image.rgb_to_yuv(content), image.rgb_to_yuv(styled)
    np.testing.assert_allclose(yuv_out[..., 0], yuv_s[..., 0], atol=1e-4)
    np.testing.assert_allclose(yuv_out[..., 1:], yuv_c[..., 1:], atol=1e-4)


def _photo(seed, shape=(13, 17)):
    """A colourful smooth field in [0, 1]."""
    rng = np.random.default_rng(seed)
    return image.resize(rng.uniform(size=(4, 5, 3)).astype(np.float32), *shape)


def test_luminance_images_are_grey_with_matched_style_statistics():
    content, style = _photo(1), _photo(2, (21, 9)) * 0.5
    grey_content, (grey_style,) = image.luminance_images(content, [style])
    for grey in (grey_content, grey_style):
        np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
        np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    y = image.luminance(content)
    np.testing.assert_allclose(grey_content[..., 0], y, atol=1e-6)
    np.testing.assert_allclose(grey_style[..., 0].mean(), y.mean(), atol=1e-5)
    np.testing.assert_allclose(grey_style[..., 0].std(), y.std(), rtol=1e-4)


@pytest.mark.parametrize("mode", ["pca", "chol", "sym"])
def test_match_color_gives_the_reference_mean_and_covariance(mode):
    source = _photo(4) * 0.3 + 0.35  # low contrast: nothing clips after matching
    reference = _photo(5, (9, 11)) * 0.4 + 0.3
    out = image.match_color(source, reference, mode).reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(out.mean(0), ref.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.cov(out, rowvar=False, bias=True),
                               np.cov(ref, rowvar=False, bias=True), atol=2e-4)


def test_match_color_unknown_mode_is_an_input_error():
    with pytest.raises(InputError, match="pca, chol or sym"):
        image.match_color(_photo(1), _photo(2), "lab")
