"""Decoded pixels kept on disk, so that a compressed raster is decoded once per training run, not once per epoch.

A random training window of a DEFLATE-compressed GeoTIFF costs its blocks' decoding (about 85 ms per chunk of nine
512 px blocks of four uint16 bands on one core, three times what cutting, normalising and flipping its windows
costs), and every epoch, every fold and every trial of a search decodes the same blocks again. nnU-Net meets this
by unpacking its compressed ``.npz`` cases into ``.npy`` files once and memory-mapping them during training; this
is the same idea for rasters too large to unpack whole: :class:`Unpacked` stores what a reader returned for an area
(its arrays, uncompressed ``.npy``) the first time the area is read, and maps the files back afterwards. Reading
them back costs the page cache's copy, not the decoder.

The key names the source files by version (path, modification time, size: :func:`segsuite.core.probes.file_version`;
a URL by its text, so clear the folder if a remote file changes) and what was read; a changed file gets new entries
and old ones stay until the folder is cleared. Entries are written to a temporary folder and renamed into place, so
DataLoader workers that race for the same area never read a partial entry. A full disk (or any failed write)
turns the cache off for the rest of the process with one warning, and training goes on reading the files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from segsuite.core.probes import file_version

log = logging.getLogger(__name__)


def source_key(location: str | os.PathLike | None) -> Hashable:
    """What identifies a source file's content in a key: its version if local, else its text (None stays None)."""
    if location is None:
        return None
    return file_version(location) or str(location)


class Unpacked:
    """Arrays read once and kept uncompressed under ``folder`` (created if missing), returned memory-mapped
    (read-only) on later reads; ``folder`` None keeps nothing (every read decodes)."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = None if folder in (None, "") else Path(folder).expanduser()
        self.written = self.hits = 0

    def get(self, key: Hashable, read: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        """``read()``'s arrays for ``key``: from the folder if an earlier read of ``key`` was kept, else read now
        and kept."""
        if self.folder is None:
            return read()
        entry = self.folder / self._name(key)
        try:
            names = sorted(os.listdir(entry), key=lambda n: int(n.split(".")[0]))
        except OSError:  # not kept yet (or the folder is unusable: _keep says so)
            arrays = read()
            self._keep(entry, arrays)
            return arrays
        self.hits += 1
        return [np.load(entry / n, mmap_mode="r") for n in names]

    @staticmethod
    def _name(key: Hashable) -> str:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        return f"{digest[:2]}/{digest[2:32]}"

    def _keep(self, entry: Path, arrays: list[np.ndarray]) -> None:
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=entry.parent))
            for i, a in enumerate(arrays):
                np.save(tmp / f"{i}.npy", np.ascontiguousarray(a))
            os.rename(tmp, entry)  # atomic; fails if another process kept the same entry first (then theirs stays)
            tmp = None
            self.written += 1
        except OSError as exc:
            if not entry.is_dir():  # not a lost race: the folder cannot take more
                log.warning("decoded-pixel cache off for this process: cannot write under %s (%s); reading the "
                            "files instead", self.folder, exc.strerror or exc)
                self.folder = None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "written": 0, "hits": 0}
