"""Clips: the frames of a video file, a folder of frames or a printf pattern, and mp4 output.

A clip is a list of frames, float32[H, W, 3] RGB in [0, 1], all the same size, with a frame
rate. What --content names is asked of the file system first: an existing file is a video
(its name may hold a `%`), decoded with OpenCV (what it reads depends on its FFmpeg build: mp4,
avi, mov, mkv are common); a folder's images are taken in name order; only a name that is
neither is a pattern, such as `frame_%04d.png` with one number placeholder, filled from 0 when
frame 0 exists (0-based numbering), else from 1 (the authors' convention), until a number has
no file.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import NamedTuple

import numpy as np

from jstyle import image as image_lib
from jstyle.errors import EnvironmentFault, InputError

DEFAULT_FPS = 25.0  # for frames without a rate (folders, patterns)


PLACEHOLDER = re.compile(r"%[-+ #0]*\d*[diu]")  # printf's whole-number conversions
CLIP_KINDS = "give a video file, a folder of frames or a pattern such as frame_%04d.png"


class Flows(NamedTuple):
    """Precomputed optical flows of a clip: the authors' file patterns, such as
    backward_[%d]_{%d}.flo (`[%d]` the frame being made, `{%d}` the frame its flow points to,
    numbered as the clip's frames) and their reliability images."""
    backward: str  # flows from each frame to earlier ones (.flo)
    backward_weights: str  # their reliability (.pgm, white reliable)
    forward: str = ""  # flows to later frames, for multi-pass runs
    forward_weights: str = ""


class Clip(NamedTuple):
    """A clip as a method takes it (the input kind `Clip`)."""
    frames: list  # float32[H, W, 3] in [0, 1] each, one size
    fps: float  # frames per second (DEFAULT_FPS for frames without a rate)
    first: int = 1  # the number of frames[0] in the source, from 1 (flow files are named so)
    flows: Flows | None = None  # precomputed flows; None: computed in process


def kind(source: str | os.PathLike) -> str:
    """What a clip source names, asking the file system first: "video" (anything at that path
    but a folder; a special file is refused when read), "folder" or "pattern" (a name that
    does not exist, with exactly one whole-number placeholder such as %04d; %% is a %).

    Raises:
      InputError: nothing at that path, and not a pattern.
    """
    path = pathlib.Path(source)
    if path.is_dir():
        return "folder"
    if path.exists() or path.is_symlink():
        return "video"
    text = str(source)
    if "%" not in text:
        raise InputError(f"--content={text} does not exist; {CLIP_KINDS}")
    rest = text.replace("%%", "")
    if len(PLACEHOLDER.findall(rest)) != 1 or rest.count("%") != 1:
        raise InputError(f"--content={text} does not exist and is not a frame pattern (one "
                         f"number placeholder such as %04d; %% for a %); {CLIP_KINDS}")
    return "pattern"


def frame_paths(source: str | os.PathLike) -> list[pathlib.Path]:
    """The frame files of a folder (image files in name order) or a pattern (from 0 if its
    frame 0 exists, else from 1, up to the first number without a file).

    Raises:
      InputError: not a folder or pattern (`kind`), an empty or unreadable folder, or a
        pattern that matches no file.
    """
    text = str(source)
    if kind(source) == "pattern":
        first = 0 if pathlib.Path(text % 0).is_file() else 1
        found = []
        while pathlib.Path(text % (first + len(found))).is_file():
            found.append(pathlib.Path(text % (first + len(found))))
        if not found:
            raise InputError(f"--content={text} matches no file (tried {text % 0} and "
                             f"{text % 1}); give the pattern of existing frames, such as "
                             "frame_%04d.png")
        return found
    folder = pathlib.Path(text)
    if not folder.is_dir():
        raise InputError(f"--content={folder} is a file, not a folder or pattern of frames; "
                         f"{CLIP_KINDS}")
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in image_lib.IMAGE_SUFFIXES)
    except OSError as e:
        raise InputError(f"cannot read the folder --content={folder} ({e.strerror}); fix its "
                         "permissions") from None
    if not found:
        raise InputError(f"--content={folder} is a folder holding no frames (.png, .jpg, "
                         "...); give a video file, a folder of frames or a pattern")
    return found


def files_of(source: str | os.PathLike) -> list[pathlib.Path]:
    """Every file a clip source reads: the video file, or the frames (`frame_paths`)."""
    return [pathlib.Path(source)] if kind(source) == "video" else frame_paths(source)


def read(source: str | os.PathLike, start: int = 0, count: int = 0,
         max_edge: int | None = None) -> tuple[list[np.ndarray], float]:
    """The frames `start` .. `start + count - 1` (count 0: to the end) of a clip, each resized
    to `max_edge` on its longer edge if given (as it is read: a long clip is held at the working
    size only), and the clip's frame rate.

    Raises:
      InputError: an unreadable video, no frames in the range, frames of different sizes.
    """
    path = pathlib.Path(source)
    shapes = set()

    def fit(frame: np.ndarray) -> np.ndarray:
        shapes.add(frame.shape)
        return image_lib.resize_to_edge(frame, max_edge) if max_edge else frame

    if kind(source) == "video":
        frames, fps = _read_video(path, start, count, fit)
    else:
        paths = frame_paths(source)[start:]
        paths = paths[:count] if count else paths
        frames, fps = [fit(image_lib.load(p)) for p in paths], DEFAULT_FPS
    if not frames:
        raise InputError(f"--content={source} has no frames from frame {start}; lower "
                         "--start_frame")
    if len(shapes) > 1:
        raise InputError(f"the frames of --content={source} differ in size; give frames of "
                         "one size")
    return frames, fps


def _read_video(path: pathlib.Path, start: int, count: int, fit
                ) -> tuple[list[np.ndarray], float]:
    cv2 = _cv2()
    image_lib.check_regular_file(path, "--content")
    capture = _capture(path)
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
                frames.append(fit(bgr[..., ::-1].astype(np.float32) / 255.0))
            index += 1
        if index == 0:
            raise InputError(f"--content={path} holds no frame OpenCV can decode; give an "
                             "mp4, avi or mov file, or a folder of frames")
        return frames, float(fps)
    finally:
        capture.release()


def _cv2():
    """OpenCV, with its and FFmpeg's log lines kept off the terminal: jstyle reports a video it
    cannot read or write in one line of its own."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read on first use
    import cv2
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def _capture(path: pathlib.Path):
    """OpenCV's reader of the video file `path` by FFmpeg (which takes the name as a file: any
    other backend may take a `%` in it for an image-sequence pattern), else by any backend."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened() and "%" not in str(path):
        capture = cv2.VideoCapture(str(path))
    return capture


def encode_mp4(frames: list[np.ndarray], fps: float, path: str | os.PathLike) -> None:
    """Writes frames (float[H, W, 3] in [0, 1]) as an MPEG-4 video at `fps` (OpenCV's
    writer, codec mp4v).

    Raises:
      EnvironmentFault: the file could not be written whole (OpenCV's writer reports no
        error: a full disk leaves a truncated file, so the file is read back and counted).
    """
    cv2 = _cv2()
    h, w, _ = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (w, h))
    try:
        if not writer.isOpened():
            raise EnvironmentFault(f"cannot write {path} (OpenCV could not open it for an mp4 "
                                   "video); free disk space or fix the permissions, then run "
                                   "again")
        for f in frames:
            writer.write(np.ascontiguousarray(
                (np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1]))
    finally:
        writer.release()
    capture = _capture(pathlib.Path(path))
    try:
        written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    if written != len(frames):
        raise EnvironmentFault(f"cannot write {path} (it holds {max(written, 0)} of "
                               f"{len(frames)} frames: the disk may be full); free disk space "
                               "or fix the permissions, then run again")
