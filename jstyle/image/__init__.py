"""Images in jstyle: load and save (Pillow), resize, colour conversions (no networks here).

jstyle's image is float32[H, W, 3], RGB. `load` returns values in [0, 1]; the optimisers work on
8-bit levels, [0, 255] (`to_levels`), which is the range the run's total-variation weight and the
Adam learning rate are measured in.
"""

from __future__ import annotations

import errno
import io
import math
import os
import pathlib
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jstyle.errors import InputError
from jstyle.system.files import write_atomic


WHITE, BLACK = (255, 255, 255), (0, 0, 0)  # what transparent pixels are composited over:
#   white for pictures (as viewers show them), black for masks (transparent = not selected)


def _integer_top(img: Image.Image, values: np.ndarray, tags) -> float:
    """The full-scale value of a one-channel integer (or float, above 1) image: from a TIFF's
    BitsPerSample and SampleFormat tags (a signed 32-bit TIFF tops at 2**31 - 1), else 65535
    for 16-bit modes and for values above 255, else 255."""
    if img.mode != "F" and tags is not None and 258 in tags:
        signed = tags.get(339, (1,))[0] == 2  # SampleFormat 2: two's complement integers
        return float(2 ** (tags[258][0] - signed) - 1)
    return 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0


def _to_float_rgb(img: Image.Image, background: tuple[int, int, int] = WHITE,
                  tags=None) -> np.ndarray:
    """Any Pillow mode -> float32[H, W, 3] in [0, 1]; alpha is composited over `background`;
    `tags`: the file's TIFF tags, if any (`_integer_top`)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" and a.max() <= 1.0 else _integer_top(img, a, tags)
        a = np.clip(a / top, 0.0, 1.0).astype(np.float32)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")  # what a
#   folder of images (photos to stylise, a clip's frames, training photos) is read for


def load(path: str | os.PathLike, max_edge: int | None = None,
         background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Reads an image file as RGB.

    Grayscale, palette, RGBA, 16- and 32-bit and CMYK files are converted; EXIF orientation is
    applied; transparent pixels are composited over `background` (BLACK for masks).

    Args:
      path: the image file.
      max_edge: if given, resize (Lanczos) so the longer edge has this many pixels.
      background: WHITE for pictures, BLACK for masks (a transparent pixel is not selected).
    Returns:
      float32[H, W, 3] in [0, 1].
    Raises:
      InputError: missing, a directory, unreadable, empty, corrupt or not an image.
    """
    path = pathlib.Path(path)
    check_regular_file(path, "image file")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"image file {path} is empty; give a JPEG or PNG image")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                tags = getattr(img, "tag_v2", None)  # before a rotated copy drops them
                array = _to_float_rgb(ImageOps.exif_transpose(img), background, tags)
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied; fix its permissions") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path} has too many pixels (more than {Image.MAX_IMAGE_PIXELS:,}: a "
                         "decompression bomb, or a scan too large to style); give a smaller "
                         "image") from None
    except UnidentifiedImageError as e:
        raise InputError(f"{path} is not an image jstyle can read ({e.__class__.__name__}); "
                         "give a JPEG or PNG image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path} is a corrupt or truncated image ({e}); "
                         "re-export it as JPEG or PNG") from None
    if max_edge:
        array = resize_to_edge(array, max_edge)
    return array


def check_regular_file(path: pathlib.Path, what: str) -> None:
    """Raises InputError, naming what `path` is, unless it is a readable regular file (or a
    symbolic link to one): missing, a directory, a symbolic link loop or a dangling link, a
    FIFO, a device or a socket."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{what} {path} is a symbolic link loop; point it at a real "
                             "file") from None
        if path.is_symlink():
            raise InputError(f"{what} {path} is a symbolic link to nothing ({os.readlink(path)}"
                             "); point it at a real file") from None
        if e.errno == errno.EACCES:
            raise InputError(f"cannot read {path}: permission denied; fix its permissions") \
                from None
        raise InputError(f"{what} {path} does not exist; check the path") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is a directory; give an image file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise InputError(f"{what} {path} is {kind}, not a file; give a regular file")


def sample_paths() -> tuple[pathlib.Path, pathlib.Path]:
    """The built-in sample pair, from scikit-image's wheel (so it exists wherever jstyle is
    installed): a photo of a cat (chelsea.png) and a stained-tissue micrograph (ihc.png)."""
    import skimage.data
    folder = pathlib.Path(skimage.data.__file__).parent
    return folder / "chelsea.png", folder / "ihc.png"


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Lanczos resize of float32[H, W, C] to float32[height, width, C], values unchanged in
    range."""
    if image.shape[:2] == (height, width):
        return image
    channels = [Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F")
                .resize((width, height), Image.Resampling.LANCZOS)
                for c in range(image.shape[2])]
    out = np.stack([np.asarray(c, dtype=np.float32) for c in channels], axis=2)
    return np.clip(out, 0.0, 1.0)


def inscribed_size(height: int, width: int, angle: float) -> tuple[int, int]:
    """(h, w) of the largest axis-aligned rectangle inside a height x width rectangle rotated by
    `angle` radians (the part of a rotated image with no fill)."""
    sin_a, cos_a = abs(math.sin(angle)), abs(math.cos(angle))
    long, short = max(height, width), min(height, width)
    if short <= 2.0 * sin_a * cos_a * long or abs(sin_a - cos_a) < 1e-10:
        # the rectangle touches the rotated one at two corners only (half the shorter side)
        half = 0.5 * short
        w, h = (half / sin_a, half / cos_a) if width >= height else (half / cos_a, half / sin_a)
    else:
        cos_2a = cos_a * cos_a - sin_a * sin_a
        w, h = (width * cos_a - height * sin_a) / cos_2a, (height * cos_a - width * sin_a) / cos_2a
    return max(1, math.floor(h)), max(1, math.floor(w))


def rotate_crop(image: np.ndarray, angle: float) -> np.ndarray:
    """float32[H, W, C] rotated by `angle` radians (counter-clockwise, bilinear) and cropped to
    the largest centred axis-aligned rectangle with no fill (`inscribed_size`)."""
    if angle == 0:
        return image
    h, w = inscribed_size(image.shape[0], image.shape[1], angle)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F")
                           .rotate(math.degrees(angle), Image.Resampling.BILINEAR, expand=True),
                           np.float32) for c in range(image.shape[2])]
    out = np.stack(channels, axis=2)
    top, left = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[top:top + h, left:left + w]


def fit_edge(height: int, width: int, max_edge: int) -> tuple[int, int]:
    """(h, w) with the longer edge equal to `max_edge` and the aspect ratio kept (>= 1 px)."""
    scale = max_edge / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_to_edge(image: np.ndarray, max_edge: int) -> np.ndarray:
    """Resizes float32[H, W, C] so its longer edge has `max_edge` pixels."""
    return resize(image, *fit_edge(image.shape[0], image.shape[1], max_edge))


def save(path: str | os.PathLike, image: np.ndarray, fmt: str = "PNG") -> None:
    """Writes float[H, W, 3] in [0, 1] as an 8-bit image (default PNG), atomically."""
    write_atomic(pathlib.Path(path), lambda f: f.write(encode(image, fmt)))


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """float[H, W, 3] in [0, 1] -> the bytes of an 8-bit image file in `fmt` (Pillow's name)."""
    pixels = np.clip(np.round(np.asarray(image, dtype=np.float32) * 255.0), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def to_levels(image):
    """[0, 1] -> 8-bit levels [0, 255] (same shape and type)."""
    return image * 255.0


# BT.601 YUV, as used by neural-style's -original_colors (image.rgb2yuv in Torch).
_RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                        [-0.14713, -0.28886, 0.436],
                        [0.615, -0.51499, -0.10001]], dtype=np.float32)
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV).astype(np.float32)


def rgb_to_yuv(image: np.ndarray) -> np.ndarray:
    """float[..., 3] RGB -> YUV (BT.601); Y keeps the range of the input."""
    return image @ _RGB_TO_YUV.T


def yuv_to_rgb(image: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_yuv`."""
    return image @ _YUV_TO_RGB.T


def keep_colors(styled: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The styled image's luminance with the content's chroma (neural-style's -original_colors).

    Args:
      styled, content: float[H, W, 3] RGB in [0, 1], same size.
    Returns:
      float32[H, W, 3] in [0, 1].
    """
    yuv = rgb_to_yuv(content)
    yuv[..., 0] = rgb_to_yuv(styled)[..., 0]
    return np.clip(yuv_to_rgb(yuv), 0.0, 1.0).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """Y of BT.601 YUV: float[H, W, 3] RGB in [0, 1] -> float32[H, W] in [0, 1]."""
    return rgb_to_yuv(np.asarray(image, np.float32))[..., 0]


def luminance_images(content: np.ndarray, styles: list[np.ndarray]
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gatys et al. 2017's colour preservation, first half: transfer on luminance only.

    The content becomes its luminance, and each style its luminance shifted and scaled to the
    content luminance's mean and standard deviation (so the style's brightness and contrast
    do not leak in). Both are grey images (Y copied to R, G and B) the network can read.

    Args:
      content, styles: float[H, W, 3] RGB in [0, 1].
    Returns:
      (content, styles), each float32[H, W, 3] in [0, 1] with equal channels.
    """
    y_content = luminance(content)
    mu, sigma = y_content.mean(), y_content.std()
    grey = lambda y: np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)
    out_styles = []
    for style in styles:
        y = luminance(style)
        out_styles.append(grey((y - y.mean()) / max(float(y.std()), 1e-6) * sigma + mu))
    return grey(y_content), out_styles


def _sqrtm(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T


def match_color(image: np.ndarray, reference: np.ndarray, mode: str = "pca",
                eps: float = 1e-5) -> np.ndarray:
    """Gives `image` the mean and colour covariance of `reference` (Gatys et al. 2017, colour
    histogram matching; the authors' match_color, with its three choices of matrix square root).

    x -> A (x - mu_x) + mu_r, where A Sigma_x A^T = Sigma_r:
      "pca": A = Sigma_r^(1/2) Sigma_x^(-1/2) (symmetric roots; the authors' default);
      "chol": A = L_r L_x^-1 with Cholesky factors;
      "sym": A = Sigma_x^(-1/2) (Sigma_x^(1/2) Sigma_r Sigma_x^(1/2))^(1/2) Sigma_x^(-1/2), the
        map that moves the colours least.
    eps * I is added to both covariances so a flat image does not divide by zero.

    Args:
      image, reference: float[H, W, 3] RGB in [0, 1] (sizes may differ).
    Returns:
      float32[H, W, 3], clipped to [0, 1].
    """
    x = np.asarray(image, np.float64).reshape(-1, 3)
    r = np.asarray(reference, np.float64).reshape(-1, 3)
    mu_x, mu_r = x.mean(0), r.mean(0)
    cov_x = np.cov(x - mu_x, rowvar=False, bias=True) + eps * np.eye(3)
    cov_r = np.cov(r - mu_r, rowvar=False, bias=True) + eps * np.eye(3)
    if mode == "pca":
        a = _sqrtm(cov_r) @ np.linalg.inv(_sqrtm(cov_x))
    elif mode == "chol":
        a = np.linalg.cholesky(cov_r) @ np.linalg.inv(np.linalg.cholesky(cov_x))
    elif mode == "sym":
        root_x = _sqrtm(cov_x)
        inv_root_x = np.linalg.inv(root_x)
        a = inv_root_x @ _sqrtm(root_x @ cov_r @ root_x) @ inv_root_x
    else:
        raise InputError(f"unknown colour-matching mode {mode!r}; use pca, chol or sym")
    out = (x - mu_x) @ a.T + mu_r
    return np.clip(out, 0.0, 1.0).reshape(np.shape(image)).astype(np.float32)


def _box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean of float[H, W, ...] over each (2r+1)^2 window, counting only pixels in the image."""
    from scipy import ndimage
    size = (2 * radius + 1, 2 * radius + 1) + (1,) * (x.ndim - 2)
    ones = np.ones(x.shape[:2] + (1,) * (x.ndim - 2))
    return (ndimage.uniform_filter(x, size, mode="constant")
            / ndimage.uniform_filter(ones, size, mode="constant"))


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun & Tang's guided filter with a colour guide (ECCV 2010, Eq. 19-21): `source`
    smoothed while keeping the edges of `guide`, as q = mean(a) . I + mean(b) with a, b the
    per-window linear fit of the source to the guide, regularised by eps.

    Args:
      guide: float[H, W, 3] in [0, 1]; source: float[H, W].
      radius: window radius r (windows of (2r+1)^2 pixels); eps: the regulariser.
    Returns:
      float64[H, W].
    """
    i = np.asarray(guide, np.float64)
    p = np.asarray(source, np.float64)
    mean_i, mean_p = _box_mean(i, radius), _box_mean(p, radius)
    cov_ip = _box_mean(i * p[..., None], radius) - mean_i * mean_p[..., None]
    var_i = (_box_mean(i[..., :, None] * i[..., None, :], radius)
             - mean_i[..., :, None] * mean_i[..., None, :])
    a = np.linalg.solve(var_i + eps * np.eye(3), cov_ip[..., None])[..., 0]
    b = mean_p - np.sum(a * mean_i, axis=-1)
    return np.sum(_box_mean(a, radius) * i, axis=-1) + _box_mean(b, radius)


def denoise_chroma(image: np.ndarray, guide: np.ndarray, radius: int = 2,
                   eps: float = 0.01) -> np.ndarray:
    """The CIELAB chroma (a*, b*) of `image` guided-filtered by `guide`, its lightness kept:
    removes the colour speckle a pixel optimisation leaves (Deep Painterly Harmonization's
    filt_cnn_artifact.m, first part: r = 2, eps = 0.1^2, the composite as guide).

    Args:
      image, guide: float[H, W, 3] RGB in [0, 1].
    Returns:
      float32[H, W, 3] in [0, 1].
    """
    from skimage import color
    lab = color.rgb2lab(np.clip(image, 0.0, 1.0))
    for c in (1, 2):
        lab[..., c] = guided_filter(guide, lab[..., c], radius, eps)
    return np.clip(color.lab2rgb(lab), 0.0, 1.0).astype(np.float32)
