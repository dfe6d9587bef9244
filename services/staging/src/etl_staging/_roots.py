"""Where file sources may read: below the declared roots, the data folder and ``ETL_FILE_ROOTS``.

A file group's path is checked twice. When the sources file is loaded, the part of its path before the
first wildcard, with ``..`` and the symbolic links that exist resolved: ``{data_dir}/../../etc/passwd``
or ``/etc/passwd`` is refused there (exit 2) before anything connects. When a pull reads, every file its
globs match, resolved the same way: a symbolic link in a drop folder that points outside, or a ``..``
after a wildcard, is refused then, before a byte is read, and the pull fails with exit 2 (nothing is
committed, so retention deletes nothing).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl_shared import ConfigurationError

_WILDCARD = re.compile(r"[*?[]")


@dataclass(frozen=True)
class FileRoots:
    """The data folder (what ``{data_dir}`` and a relative path stand for) and every folder file
    sources may read below, the data folder first."""

    data_dir: Path
    roots: tuple[Path, ...]

    @classmethod
    def from_settings(cls, settings: Any) -> FileRoots:
        return cls(settings.data_dir, tuple(settings.readable_roots()))

    @classmethod
    def data_folder_only(cls, data_dir: Path) -> FileRoots:
        return cls(data_dir, (data_dir,))

    def pattern(self, path: str) -> str:
        """A file group's glob: ``{data_dir}`` replaced, a relative path taken below the data folder."""
        text = path.replace("{data_dir}", str(self.data_dir))
        return text if os.path.isabs(text) else os.path.join(self.data_dir, text)

    def contains(self, path: str | Path) -> bool:
        """Whether ``path``, with ``..`` and symbolic links resolved, is a root or below one."""
        real = os.path.realpath(path)
        for root in self.roots:
            top = os.path.realpath(root)
            if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
                return True
        return False

    def static_part(self, path: str) -> str:
        """The part of a group's glob before its first wildcard (the whole path without one)."""
        kept: list[str] = []
        for part in self.pattern(path).split(os.sep):
            if _WILDCARD.search(part):
                break
            kept.append(part)
        return os.sep.join(kept) or os.sep

    def describe(self) -> str:
        extra = [str(root) for root in self.roots[1:]]
        text = f"the data folder {self.data_dir}"
        return text + (f" and ETL_FILE_ROOTS {':'.join(extra)}" if extra else " (ETL_FILE_ROOTS adds more)")

    def refuse_outside(self, paths: Sequence[Path], where: str) -> None:
        """ConfigurationError naming the first of ``paths`` outside the roots, and where it resolves."""
        for path in paths:
            if not self.contains(path):
                raise ConfigurationError(
                    f"{where}: {path} (resolved: {os.path.realpath(path)}) is outside the folders file"
                    f" sources may read, {self.describe()}: refused, nothing was read"
                )


def file_groups(source: Any) -> Iterator[tuple[str, str, Any]]:
    """(entity, field, file group) of every file group a source declares: a file source's entities and
    a REST source's fallback files."""
    for index, entity in enumerate(getattr(source, "entities", ())):
        for number, group in enumerate(getattr(entity, "files", None) or ()):
            yield entity.name, f"entities.{index}.files.{number}.path", group
    for entity_name, groups in (getattr(source, "fallback", None) or {}).items():
        for number, group in enumerate(groups):
            yield entity_name, f"fallback.{entity_name}.{number}.path", group


def check_file_paths(path: Path, sources: Any, roots: FileRoots) -> None:
    """Refuse (ConfigurationError naming the file, source, entity and field) every file group of the
    sources file ``path`` whose path, as far as it has no wildcard, is outside ``roots``."""
    problems = []
    for source in sources.sources:
        for entity, field, group in file_groups(source):
            if not roots.contains(roots.static_part(group.path)):
                problems.append(
                    f"source {source.name!r} field {field} (entity {entity!r}): {group.path!r} is outside the"
                    f" folders file sources may read, {roots.describe()}"
                )
    if problems:
        raise ConfigurationError(f"sources file {path}: " + "; ".join(problems))
