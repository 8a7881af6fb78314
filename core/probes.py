"""What a reader's ``check`` learned about a local file (its header, size, bands...), kept for its ``open`` so that the
file is not probed twice: by path, modification time and size, so a file changed in between is probed again."""

from __future__ import annotations

import os
from typing import Any

Version = tuple[str, int, int]  # (path, modification time in ns, size in bytes)


def file_version(path: str | os.PathLike) -> Version | None:
    """``path``'s version, taken before it is read (so a later change shows); None for a missing file or a location
    that is no local file (a URL)."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return str(path), stat.st_mtime_ns, stat.st_size


class Probes:
    """Findings by file version: :meth:`keep` in ``check``, :meth:`take` (once) in ``open``."""

    def __init__(self) -> None:
        self._found: dict[Version, Any] = {}

    def keep(self, version: Version | None, found: Any) -> None:
        """Keep ``found`` for the file as it was at ``version`` (nothing for None)."""
        if version is not None:
            self._found[version] = found

    def take(self, path: str | os.PathLike) -> Any | None:
        """What was kept for ``path`` if the file is unchanged since, else None (probe it again)."""
        version = file_version(path)
        return None if version is None else self._found.pop(version, None)
