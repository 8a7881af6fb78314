"""Land-cover classes: the lecture's six by default, or a ``classes.json`` / ``classes.csv`` in the data root (the
core's class map, :mod:`segsuite.core.classmap`, with ids exactly 0..N-1: they are the values in label rasters)."""

from __future__ import annotations

from pathlib import Path

from segsuite.core.classmap import ClassMap
from segsuite.core.classmap import find_class_map as _find
from segsuite.core.classmap import load_class_map as _load

__all__ = ["DEFAULT_CLASSES", "ClassMap", "find_class_map", "load_class_map"]

DEFAULT_CLASSES = ClassMap.of([
    ("dense forest", (0, 100, 0)), ("sparse forest", (110, 190, 70)), ("moor", (150, 90, 160)),
    ("herbaceous formation", (230, 220, 100)), ("building", (200, 30, 30)), ("road", (90, 90, 90))])


def load_class_map(path: str | Path) -> ClassMap:
    """A class map file whose ids are exactly 0..N-1; a DataError naming the file otherwise."""
    return _load(path, contiguous=True)


def find_class_map(root: str | Path) -> ClassMap:
    """The class map file in ``root`` (``classes.json`` or ``classes.csv``), else the lecture defaults."""
    return _find(root, DEFAULT_CLASSES, contiguous=True)
