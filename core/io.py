"""Small file helpers shared by every writer: outputs appear whole or not at all."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import DataError


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early, before any work, if ``path`` exists (and ``overwrite`` is off) or its folder is not writable."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"output {path} already exists; pass overwrite=true to replace it")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot write {path}: cannot create folder {folder} ({err.strerror})") from err
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write {path}: folder {folder} is not writable")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it."""
    path = check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return Path(path)


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]], overwrite: bool = True,
              columns: list[str] | None = None) -> Path:
    """Write ``rows`` (dicts with the same keys) as CSV with a header, atomically (``columns``: when rows may be
    empty)."""
    columns = columns or (list(rows[0]) if rows else [])
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
