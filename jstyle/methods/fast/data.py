"""The fast network's training photos: the folder's JPEG and PNG files, and batches of random
crops, each a pure function of the run's key and the step, prepared ahead by a thread."""

from __future__ import annotations

import pathlib
import queue
import threading

import jax
import numpy as np

from jstyle import image as image_lib
from jstyle.errors import EnvironmentFault, InputError, JStyleError

PREFETCH = 4  # batches the data thread prepares ahead


def photo_paths(data_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """The JPEG and PNG files under `data_dir` (recursively), sorted.

    Raises:
      InputError: the folder is missing or holds no such file.
    """
    folder = pathlib.Path(data_dir)
    if not folder.is_dir():
        raise InputError(f"--data_dir={folder} is not a folder; give a folder of JPEG or PNG "
                         "photos (e.g. COCO train2014)")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in image_lib.IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"--data_dir={folder} holds no .jpg or .png files; give a folder of "
                         "photos (e.g. COCO train2014)")
    return paths


class Batches:
    """Batch `step` of random crops, float32[B, size, size, 3] in [0, 1], a pure function of
    (key, step); a background thread prepares the next ones while the device trains.

    A photo is resized so that its shorter edge is `size`, then cropped at random. Unreadable
    files are skipped (the next file in a fixed order is used) and counted in `skipped`.
    """

    def __init__(self, paths: list[pathlib.Path], key: jax.Array, batch_size: int, size: int,
                 first_step: int = 0, prefetch: int = PREFETCH):
        self.paths, self.key, self.batch_size, self.size = paths, key, batch_size, size
        self.skipped: set[pathlib.Path] = set()
        self.queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, args=(first_step,), daemon=True)
        self.thread.start()

    def _crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            if path in self.skipped:
                continue
            try:
                img = image_lib.load(path)
            except InputError:
                self.skipped.add(path)
                continue
            h, w = img.shape[:2]
            scale = self.size / min(h, w)
            h, w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
            img = image_lib.resize(img, h, w)
            y, x = rng.integers(0, h - self.size + 1), rng.integers(0, w - self.size + 1)
            return img[y:y + self.size, x:x + self.size]
        raise InputError("no photo in --data_dir could be read; give readable JPEG or PNG files")

    def make(self, step: int) -> np.ndarray:
        """Batch `step`, computed here (the thread calls this too)."""
        seed = np.asarray(jax.random.key_data(jax.random.fold_in(self.key, step)))
        rng = np.random.default_rng(seed.astype(np.uint32))
        picks = rng.integers(0, len(self.paths), self.batch_size)
        return np.stack([self._crop(int(i), rng) for i in picks]).astype(np.float32)

    def _fill(self, step: int) -> None:
        while not self.stop.is_set():
            try:
                batch = self.make(step)
            except BaseException as e:  # noqa: BLE001 (the main thread waits for every batch)
                self._put((step, e))
                return  # the main thread raises it
            self._put((step, batch))
            step += 1

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, stop: threading.Event | None = None) -> tuple[int, np.ndarray] | None:
        """The next (step, batch), or None once `stop` is set (checked while waiting, so that
        Ctrl-C and SIGTERM end the wait).

        Raises:
          InputError: no photo could be read, or the thread ran out of memory.
          EnvironmentFault: the thread could not read the disk.
          RuntimeError: the thread ended without a batch or a reason.
        """
        while stop is None or not stop.is_set():
            try:
                step, batch = self.queue.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise RuntimeError("the batch thread ended without a reason") from None
                continue
            if isinstance(batch, BaseException):
                raise self._failure(batch)
            return step, batch
        return None

    def _failure(self, error: BaseException) -> BaseException:
        """What the main thread raises for an exception of the batch thread."""
        if isinstance(error, JStyleError):
            return error
        if isinstance(error, MemoryError):
            return InputError(f"the memory ran out while preparing a batch of {self.batch_size} "
                              f"crops of {self.size} px; lower --size or --batch_size")
        if isinstance(error, OSError):
            return EnvironmentFault(f"cannot read the photos in --data_dir ({error}); check the "
                                    "disk and the permissions, then run again")
        return error  # a fault of jstyle's: its own traceback

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
