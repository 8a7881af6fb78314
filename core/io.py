"""Writing files so that a run leaves all of its outputs or none: one staging rule, one JSON writer, one CSV writer.

The staging rule (every predict and evaluate run, and every single file the suite writes):

* outputs are first written under a staging folder ``.segsuite-staging-<host>-<pid>-<random>`` created in the
  nearest existing folder above the outputs, so it is on the same filesystem and the final step is a rename;
* only when everything succeeded are the files renamed onto their destinations (:meth:`Staging.commit`); on any
  error, Ctrl-C included, the staging folder is deleted and no destination is touched;
* a staging folder left behind by a run that was killed (its process is gone) is recognised by its name and
  removed by the next run that stages in the same folder.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import DataError

STAGING_PREFIX = ".segsuite-staging-"
_HOST = socket.gethostname().replace("-", "_")


# ----------------------------------------------------------------------------------------------------------------
# Checks before work
# ----------------------------------------------------------------------------------------------------------------


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above (or at) ``path`` that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path if path.is_dir() else path.parent


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early, before any work, if ``path`` exists (and ``overwrite`` is off), is a folder, or could not be
    created because the nearest existing folder above it is not writable or a file stands in its way."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"output {path} is a folder; a file is written there")
    if path.exists() and not overwrite:
        raise DataError(f"output {path} already exists; pass overwrite=true to replace it")
    folder = existing_ancestor(path.parent)
    blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DataError(f"cannot write {path}: {blocker} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write {path}: folder {folder} is not writable")
    return path


def check_outputs(paths: Iterable[Path], overwrite: bool) -> None:
    """:func:`check_writable` for every path."""
    for path in paths:
        check_writable(path, overwrite)


# ----------------------------------------------------------------------------------------------------------------
# Staging
# ----------------------------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete staging folders in ``folder`` left by killed runs on this host (their process is gone)."""
    removed = []
    for stage in folder.glob(STAGING_PREFIX + "*"):
        parts = stage.name[len(STAGING_PREFIX):].split("-")
        if len(parts) < 3 or parts[0] != _HOST or not parts[1].isdigit():
            continue
        if not _alive(int(parts[1])):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    return removed


def work_folder(prefix: str, parent: str | os.PathLike | None = None) -> Path:
    """A new folder ``<prefix><pid>-<random>`` in ``parent`` (TMPDIR), after removing those of processes on this
    machine that are gone (killed, or a start that failed before it could clean up)."""
    parent = Path(parent or tempfile.gettempdir())
    for folder in parent.glob(prefix + "*"):
        pid = folder.name[len(prefix):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagedPaths(dict):
    """Where a sink writes each kind of output (the staged paths), and ``final``: where each lands on commit (for
    what a file says about its own name, e.g. a report naming the raster it describes)."""

    def __init__(self, staged: Mapping[str, Path], final: Mapping[str, Path]) -> None:
        super().__init__(staged)
        self.final = dict(final)


class Staging:
    """Stages files for ``destinations`` and renames them all into place on :meth:`commit` (see module docstring).

    Use as a context manager: leaving it without a commit (an error, Ctrl-C) deletes everything staged.
    ``path(dest)`` gives the staged location of a destination (its folders are created).
    """

    def __init__(self, destinations: Iterable[Path], overwrite: bool = False) -> None:
        self.destinations = [Path(os.path.abspath(p)) for p in destinations]
        self.overwrite = overwrite
        check_outputs(self.destinations, overwrite)
        common = Path(os.path.commonpath([str(p.parent) for p in self.destinations])) if self.destinations else None
        self.anchor = existing_ancestor(common) if common else Path.cwd()
        remove_stale_staging(self.anchor)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_HOST}-{os.getpid()}-", dir=self.anchor))
        except OSError as err:
            raise DataError(f"cannot write into {self.anchor}: {err.strerror}") from err
        self._committed = False

    def path(self, destination: Path) -> Path:
        """Where ``destination`` is written until the commit."""
        staged = self.root / Path(os.path.abspath(destination)).relative_to(self.anchor)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def paths(self, destinations: Mapping[str, Path]) -> StagedPaths:
        """The staged path of every kind of output, with their final ``destinations``."""
        return StagedPaths({kind: self.path(p) for kind, p in destinations.items()}, destinations)

    def staged(self, root: Path | None = None) -> list[tuple[Path, Path]]:
        """(staged file, destination) of every file under ``root`` (default: this staging folder; another process's
        staging folder in the same anchor in distributed prediction)."""
        root = root or self.root
        return [(p, self.anchor / p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()]

    def commit(self, roots: Sequence[Path] = ()) -> list[Path]:
        """Move every staged file (also those under other processes' ``roots``) onto its destination (checked again:
        nothing appeared there meanwhile)."""
        pairs = [pair for root in [self.root, *roots] for pair in self.staged(root)]
        files, targets = [f for f, _ in pairs], [t for _, t in pairs]
        if not self.overwrite:
            clash = next((t for t in targets if t.exists()), None)
            if clash is not None:
                raise DataError(f"output {clash} appeared while this run was working; pass overwrite=true to replace "
                                "it")
        mode = 0o666 & ~_umask()
        for src, dst in zip(files, targets):
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(src, mode)  # staged temp files may be private; outputs get the usual permissions
            os.replace(src, dst)
        self._committed = True
        self.discard()
        return targets

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            self.discard()


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """One file under the staging rule: yields the staged path; renamed onto ``path`` on success."""
    with Staging([Path(path)], overwrite) as stage:
        yield stage.path(Path(path))
        stage.commit()


# ----------------------------------------------------------------------------------------------------------------
# JSON and CSV
# ----------------------------------------------------------------------------------------------------------------


def pattern_matches(input: Any) -> list[Path] | None:
    """The files a glob pattern ``input`` (``scenes/*.tif``) matches, sorted; None when ``input`` is no pattern (or
    names an existing path literally). A DataError when the pattern matches nothing."""
    text = str(input)
    if not glob.has_magic(text) or Path(text).exists():
        return None
    matches = sorted(glob.glob(text))
    if not matches:
        raise DataError(f"input pattern {text!r} matches no files")
    return [Path(m) for m in matches]


def plain(value: Any) -> Any:
    """``value`` as strict-JSON-able Python: NaN and infinities become None, numpy/torch scalars and arrays become
    numbers and lists, paths strings, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch
        return plain(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def dump_json(data: Any) -> str:
    """Strict JSON text (NaN as null), indented."""
    return json.dumps(plain(data), indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, data: Any, overwrite: bool = True) -> Path:
    """Write ``data`` as strict JSON (NaN and infinities as null) under the staging rule."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(dump_json(data))
    return Path(path)


def _cell(value: Any) -> Any:
    value = plain(value)
    return "" if value is None else value


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], overwrite: bool = True,
              columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV with a header under the staging rule; NaN and None are empty cells. ``columns``: the
    header (default: the first row's keys; needed when rows may be empty)."""
    columns = list(columns or (list(rows[0]) if rows else []))
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(row.get(k)) for k in columns} for row in rows)
    return Path(path)
