"""Files a job writes: complete under their final name, or not there at all; its leftovers removed.

A file is written to a temporary file in the same folder, named ``.<final name>.<random>.etl-tmp``
(:func:`temporary_file`), flushed to disk (fsync) and renamed over the final name (``os.replace``,
atomic within a file system), and the folder is synced. A job killed in between (SIGKILL, the
container stopped, the node lost) leaves only such a temporary file: the next job of the zone removes
them when it starts (:func:`remove_stale_temporary_files`), logging each name and size. One job of a
zone runs at a time (its lease), so a temporary file the job finds at its start is a dead job's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

_log = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".etl-tmp"
#: ``.<final name>.<8 characters of tempfile.mkstemp>.etl-tmp``
_TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")
#: What the exports of earlier releases left: ``.<final name>.<random>.tmp``, for the final names given.
_EARLIER_NAME = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp$")


def temporary_file(final: Path) -> tuple[int, Path]:
    """A new temporary file beside ``final`` (an open descriptor and its path), named so that
    :func:`remove_stale_temporary_files` knows it."""
    handle, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=TEMPORARY_SUFFIX)
    return handle, Path(name)


def fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (best effort: not every platform opens a directory)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(handle)
    finally:
        os.close(handle)


def write_atomically(final: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``final``: a temporary file in the same folder, fsync, then ``os.replace``.
    A reader sees the previous file or the new one whole, never a part."""
    handle, temp = temporary_file(final)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_folder(final.parent)


def is_temporary_file(name: str, *, earlier_suffixes: Sequence[str] = ()) -> bool:
    """Whether ``name`` is one of the jobs' temporary files (and, with ``earlier_suffixes``, one an
    earlier release left for a final name ending so)."""
    if _TEMPORARY_NAME.match(name):
        return True
    earlier = _EARLIER_NAME.match(name)
    return bool(earlier and earlier.group("final").endswith(tuple(earlier_suffixes)) and earlier_suffixes)


def remove_stale_temporary_files(
    folder: Path, *, earlier_suffixes: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """Delete the temporary files a killed job left in ``folder`` (not below it), logging each name
    and size; returns (name, bytes) of each. Other files, links and folders are left alone. Call it
    at a job's start, while it holds its zone's lease."""
    removed: list[tuple[str, int]] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not is_temporary_file(entry.name, earlier_suffixes=earlier_suffixes):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        size = entry.stat(follow_symlinks=False).st_size
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append((entry.name, size))
        _log.warning(
            "removed %s (%d bytes) from %s: the temporary file of a job that did not end (killed?)",
            entry.name,
            size,
            folder,
            extra={"file": entry.name, "bytes": size, "folder": str(folder)},
        )
    return removed
