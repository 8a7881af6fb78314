"""Finding a data set's files, written once for every domain: images in a folder, images paired with their masks by
file stem, a reader's inputs, and synthetic data generated into a missing root in one atomic step.

Every error names the folder or file and says what was expected, so a user can fix the layout from the message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from segsuite.core.errors import DataError
from segsuite.core.io import pattern_matches

Pair = tuple[Path, Path]  # (image, mask)


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path if it is a folder; otherwise a DataError naming it (``what``: "image", "mask"...)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} folder {path} does not exist")
    return path


def files_in(folder: Path, suffixes: Iterable[str], pattern: str = "*") -> list[Path]:
    """Sorted files in ``folder`` matching ``pattern`` whose suffix (any case) is one of ``suffixes``."""
    accepted = {s.lower() for s in suffixes}
    return sorted(p for p in folder.glob(pattern) if _suffix(p) in accepted and p.is_file())


def _suffix(path: Path) -> str:
    """The file's suffix in lower case, double ones (``.nii.gz``, ``.ome.tif``) included."""
    name = path.name.lower()
    for double in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def stem(path: Path) -> str:
    """The file name without its (possibly double) suffix: ``case_01.nii.gz`` -> ``case_01``."""
    return path.name[: len(path.name) - len(_suffix(path))]


def first_existing(image: Path, candidates: Sequence[Path]) -> Pair:
    """``(image, the first candidate mask that exists)``; a DataError naming the image and every candidate."""
    for mask in candidates:
        if mask.is_file():
            return image, mask
    raise DataError(f"no label for image {image}: expected {' or '.join(str(c) for c in candidates)}")


def nonempty(pairs: list, where: Path, suffixes: Iterable[str]) -> list:
    """``pairs`` unless empty (a DataError naming the folder and the accepted suffixes)."""
    if not pairs:
        raise DataError(f"no images found in {where} (accepted suffixes: {', '.join(suffixes)})")
    return pairs


def pair_by_stem(image_dir: str | os.PathLike, mask_dir: str | os.PathLike, image_suffixes: Iterable[str],
                 mask_suffixes: Sequence[str] = (".png",), mask_name: Callable[[str], str] = str) -> list[Pair]:
    """Every image in ``image_dir`` with the mask in ``mask_dir`` whose stem is ``mask_name(image stem)`` (the same
    stem by default), trying ``mask_suffixes`` in order; sorted by image name."""
    image_dir, mask_dir = require_dir(image_dir, "image"), require_dir(mask_dir, "mask")
    image_suffixes = tuple(image_suffixes)
    pairs = [first_existing(image, [mask_dir / f"{mask_name(stem(image))}{s}" for s in mask_suffixes])
             for image in files_in(image_dir, image_suffixes)]
    return nonempty(pairs, image_dir, image_suffixes)


def find_inputs(input: Any, suffixes: Iterable[str], kind: str, recursive: bool = True,
                skip: Callable[[str], bool] = lambda folder: False) -> list[tuple[Path, Path | None]]:
    """The files a reader's ``input`` names, each with its path relative to the input folder (None for a file named
    directly): a file, a folder (searched recursively unless ``recursive`` is false; hidden files and folders, and
    folders whose name ``skip`` accepts, are passed over), a glob pattern or a list of these. Files must have one of
    ``suffixes`` (any case); a DataError names the input and says that ``kind`` ("TIFF images (*.tif)")
    or a folder of them is expected."""
    if isinstance(input, (list, tuple)):
        return [found for entry in input for found in find_inputs(entry, suffixes, kind, recursive, skip)]
    if (matches := pattern_matches(input)) is not None:
        return [found for path in matches for found in find_inputs(path, suffixes, kind, recursive, skip)]
    src, accepted = Path(str(input)), {s.lower() for s in suffixes}
    if src.is_file() and _suffix(src) in accepted:
        return [(src, None)]
    if not src.is_dir():
        raise DataError(f"input {src} " + (f"is not one of the {kind} or a folder of them" if src.exists() else
                                           f"does not exist ({kind} or a folder of them expected)"))
    found = [(path, path.relative_to(src)) for path in sorted(src.rglob("*") if recursive else src.iterdir())
             if _suffix(path) in accepted]
    found = [(path, rel) for path, rel in found if path.is_file() and not rel.name.startswith(".")
             and not any(p.startswith(".") or skip(p) for p in rel.parts[:-1])]
    if not found:
        raise DataError(f"no {kind} in input folder {src}{' (searched recursively)' if recursive else ''}")
    return found


def generated_root(root: str | os.PathLike, generate: Callable[[Path], None] | None, hint: str) -> Path:
    """``root`` as a Path; a missing root is made by ``generate(folder)`` when given, else a DataError (``hint``:
    how to have it generated, e.g. "set synthetic_if_missing=true").

    ``generate`` writes into a hidden sibling folder that is renamed to ``root`` in one step, so an interrupted run
    never leaves half a data set behind; when several processes (DDP ranks) race, the first rename wins and the
    others use its folder."""
    root = Path(root)
    if root.exists():
        return root
    if generate is None:
        raise DataError(f"data root {root} does not exist ({hint})")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        generate(staging)
        os.replace(staging, root)
    except OSError:
        if not root.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
