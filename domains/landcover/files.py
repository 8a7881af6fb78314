"""Safe output files: checked before any work, written to a temp file beside the target, renamed on success."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import DataError


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Fail early (DataError) if ``path`` cannot be written: missing/unwritable directory or existing file."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise DataError(f"output directory does not exist (or is not a directory): {parent} (for {path})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"output directory is not writable: {parent} (for {path})")
    if path.is_dir():
        raise DataError(f"output path is a directory, expected a file name: {path}")
    if path.exists() and not overwrite:
        raise DataError(f"output already exists: {path}; pass overwrite=True to replace it")
    return path


class AtomicFile:
    """A temp file in the target's directory; ``commit()`` renames it onto the target, ``discard()`` removes it."""

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = check_output_path(path, overwrite)
        self.overwrite = overwrite
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent
            )
        except OSError as exc:
            raise DataError(f"cannot create a file in {self.path.parent} (for {self.path}): {exc}") from exc
        os.close(fd)
        self.tmp = Path(tmp)

    def sibling(self, tag: str) -> Path:
        """Another temp path next to ``tmp`` (removed by ``discard``/``commit``), e.g. for a second pass."""
        return self.tmp.with_name(f"{self.tmp.stem}.{tag}{self.path.suffix}")

    def _leftovers(self) -> list[Path]:
        return [p for p in self.tmp.parent.glob(glob.escape(self.tmp.stem) + "*") if p.is_file()]

    def commit(self, final: Path | None = None) -> Path:
        """Rename ``final`` (default ``tmp``) onto the target and remove the other temp files."""
        if self.path.exists() and not self.overwrite:
            self.discard()
            raise DataError(f"output appeared while writing: {self.path}; pass overwrite=True to replace it")
        os.replace(final or self.tmp, self.path)
        self.discard()
        return self.path

    def discard(self) -> None:
        """Remove every temp file this object made (including GDAL side files such as ``.aux.xml``)."""
        for p in self._leftovers():
            p.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; renamed onto ``path`` if the block succeeds, removed if it raises."""
    out = AtomicFile(path, overwrite)
    try:
        yield out.tmp
    except BaseException:
        out.discard()
        raise
    out.commit()
