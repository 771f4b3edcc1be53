"""Clips: the frames of a video file, a folder of frames or a printf pattern, and mp4 output.

A clip is a list of frames, float32[H, W, 3] RGB in [0, 1], all the same size, with a frame
rate. Video files are decoded with OpenCV (what it reads depends on its FFmpeg build: mp4,
avi, mov, mkv are common); a folder's images are taken in name order; a pattern such as
`frame_%04d.png` is filled with 1, 2, ... (the authors' convention) or from 0 when frame 1 is
missing, until a number has no file.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jstyle import image as image_lib
from jstyle.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DEFAULT_FPS = 25.0  # for frames without a rate (folders, patterns)


def frame_paths(source: str | os.PathLike) -> list[pathlib.Path]:
    """The frame files of a folder (image files in name order) or a printf pattern.

    Raises:
      InputError: an empty folder, or a pattern that matches no file.
    """
    text = str(source)
    if "%" in text:
        first = 0 if not pathlib.Path(text % 1).exists() and pathlib.Path(text % 0).exists() \
            else 1
        found = []
        while pathlib.Path(text % (first + len(found))).exists():
            found.append(pathlib.Path(text % (first + len(found))))
        if not found:
            raise InputError(f"--content={text} matches no file (tried {text % 1}); give the "
                             "pattern of existing frames, such as frame_%04d.png")
        return found
    folder = pathlib.Path(text)
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not found:
        raise InputError(f"--content={folder} is a folder holding no frames (.png, .jpg, "
                         "...); give a video file, a folder of frames or a pattern")
    return found


def read(source: str | os.PathLike, start: int = 0, count: int = 0,
         max_edge: int | None = None) -> tuple[list[np.ndarray], float]:
    """The frames `start` .. `start + count - 1` (count 0: to the end) of a clip, each resized
    to `max_edge` on its longer edge if given, and the clip's frame rate.

    Raises:
      InputError: an unreadable video, no frames in the range, frames of different sizes.
    """
    path = pathlib.Path(source)
    if "%" not in str(source) and path.is_file():
        frames, fps = _read_video(path, start, count)
    else:
        paths = frame_paths(source)[start:]
        paths = paths[:count] if count else paths
        frames, fps = [image_lib.load(p) for p in paths], DEFAULT_FPS
    if not frames:
        raise InputError(f"--content={source} has no frames from frame {start}; lower "
                         "--start_frame")
    if any(f.shape != frames[0].shape for f in frames):
        raise InputError(f"the frames of --content={source} differ in size; give frames of "
                         "one size")
    if max_edge:
        frames = [image_lib.resize_to_edge(f, max_edge) for f in frames]
    return frames, fps


def _read_video(path: pathlib.Path, start: int, count: int) -> tuple[list[np.ndarray], float]:
    import cv2
    image_lib.check_regular_file(path, "--content")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"--content={path} is not a video OpenCV can read; give an mp4, "
                             "avi or mov file, or a folder of frames")
        fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        frames, index = [], 0
        while not count or len(frames) < count:
            ok, bgr = capture.read()
            if not ok:
                break
            if index >= start:
                frames.append(bgr[..., ::-1].astype(np.float32) / 255.0)
            index += 1
        if index == 0:
            raise InputError(f"--content={path} holds no frame OpenCV can decode; give an "
                             "mp4, avi or mov file, or a folder of frames")
        return frames, float(fps)
    finally:
        capture.release()


def encode_mp4(frames: list[np.ndarray], fps: float, path: str | os.PathLike) -> None:
    """Writes frames (float[H, W, 3] in [0, 1]) as an MPEG-4 video at `fps` (OpenCV's
    writer, codec mp4v)."""
    import cv2
    h, w, _ = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(
                (np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1]))
    finally:
        writer.release()
