"""People's files: no input is ever overwritten, and an output is written with its record or
not at all.

  check_outputs   before any work: every output path against every input (by resolved path
                  and by file identity: hard links, symlinks), a directory or a read-only file
                  in an output's place, a folder that cannot be written
  write_together  all of a result's files to temporary files first, then renamed into place;
                  on any OS error what this run wrote is removed and EnvironmentFault names
                  the path, the error and the fix
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import tempfile
from typing import Iterable

from jstyle.errors import EnvironmentFault, InputError


def same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Whether `a` and `b` name one file: the same resolved path, or (both existing) the same
    device and inode (a hard link)."""
    a, b = pathlib.Path(a), pathlib.Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):  # missing, or a symbolic link loop (named when read)
        return a.absolute() == b.absolute()


def check_outputs(outputs: Iterable[pathlib.Path],
                  inputs: Iterable[tuple[str, pathlib.Path | None]]) -> None:
    """Raises InputError if an output would overwrite an input, is a directory, or exists and
    may not be written (read-only, as `cp` refuses), or if its folder is missing or not
    writable (`check_folder`).

    Args:
      outputs: every path the run will write (image, record, snapshots, checkpoint).
      inputs: (flag, e.g. "--content", the path it names) for every input file.
    """
    inputs = list(inputs)
    for out in map(pathlib.Path, outputs):
        for flag, given in inputs:
            if given is not None and same_file(out, given):
                raise InputError(f"{out} would overwrite the input {flag}={given}; choose "
                                 "another --output")
        if out.is_dir():
            raise InputError(f"{out} is a directory, in the way of an output; remove it or "
                             "choose another --output")
        if out.exists() and (not os.access(out, os.W_OK) or
                             not out.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)):
            raise InputError(f"{out} exists and is read-only; make it writable, remove it, or "
                             "choose another --output")
        check_folder(out.parent)


def check_distinct(planned: dict[str, list[pathlib.Path]]) -> None:
    """Raises InputError when two inputs of one run would write the same file (a folder run
    over p.png and p_pass1.png, or over a.jpg and a.png).

    Args:
      planned: input name -> every path the run writes for it.
    """
    owner: dict[pathlib.Path, str] = {}
    for source, paths in planned.items():
        for path in paths:
            other = owner.setdefault(pathlib.Path(path).absolute(), source)
            if other != source:
                raise InputError(f"{other} and {source} would both write {path}; rename one "
                                 "of them, or run them separately")


def check_stale(record: pathlib.Path, planned: list[pathlib.Path]) -> None:
    """Raises InputError when the record an earlier run left at `record` (a JSON file whose
    "images" names its images) lists an image that still exists and that this run, which
    replaces the record, would not write: it would be left beside the new outputs with no
    record of it.

    Args:
      record: where this run writes its record.
      planned: every path this run writes.
    """
    try:
        images = json.loads(record.read_text()).get("images", {})
        earlier = [record.parent / pathlib.Path(p).name for p in images.values()]  # siblings
    except (OSError, ValueError, AttributeError, TypeError):  # none, or not a jstyle record
        return
    mine = {pathlib.Path(p).absolute() for p in planned}
    stale = [p for p in earlier if p.absolute() not in mine and p.is_file()]
    if stale:
        raise InputError(f"{record} records an earlier run whose {', '.join(map(str, stale))} "
                         "this run would not replace; remove them, or choose another --output")


def check_folder(folder: pathlib.Path) -> None:
    """Raises InputError unless `folder` exists and a file can be made in it."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder; choose an --output in a folder")
    if not folder.is_dir():
        raise InputError(f"the folder {folder} does not exist; create it first")
    try:  # the real test of writability (permissions, read-only or special file systems)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise InputError(f"cannot write to {folder} ({e.strerror}); choose a writable "
                         "--output") from None


def write_atomic(path: pathlib.Path, write) -> None:
    """Calls write(file) on a temp file beside `path`, then renames it over `path`.

    Raises:
      InputError: the folder does not exist or is not writable.
      EnvironmentFault: writing failed (disk full...); `path` is left as it was.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"cannot write {path} ({e.strerror}); choose a writable output path") \
            from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files; outputs are ordinary ones
        os.replace(tmp, path)
    except OSError as e:  # a write's error names no file: name the one being written
        raise EnvironmentFault(f"cannot write {path} ({e.strerror or e}); free disk space or "
                               "fix the permissions, then run again") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_together(files: dict[pathlib.Path, bytes]) -> None:
    """Writes every file or none: each to a temporary file beside it, then all renamed into
    place in the given order (put the record last).

    Raises:
      EnvironmentFault: an OS error (disk full, permissions...); the temporary files and the
        files already renamed by this call are removed.
    """
    temps: dict[pathlib.Path, str] = {}
    placed: list[pathlib.Path] = []
    current = None
    try:
        for path, data in files.items():
            current = path
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps[path] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files; outputs are ordinary
        for path, tmp in temps.items():
            current = path
            os.replace(tmp, path)
            placed.append(path)
    except OSError as e:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        for path in placed:
            path.unlink(missing_ok=True)
        raise EnvironmentFault(f"cannot write {current} ({e.strerror or e}); nothing of this "
                               "result was kept; free disk space or fix the permissions, then "
                               "run again") from None
