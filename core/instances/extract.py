"""Instances from a semantic prediction: connected components of each thing class, or, when the model predicts
object borders, a marker watershed on the distance transform that splits touching objects (as in the U-Net paper).

Works on 2D images ``(H, W)`` and 3D volumes ``(D, H, W)`` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from segsuite.core.errors import ConfigError

BORDER_MODES = ("auto", "on", "off")


@dataclass
class Instances:
    """Instance ids and their classes.

    Shape:
        ids: int32 ``(H, W)`` or ``(D, H, W)``; 0 = no instance, 1..n = instance number.
        classes: int64 ``(n + 1,)``; ``classes[i]`` is the class index of instance i, ``classes[0] = -1``.
    """

    ids: np.ndarray
    classes: np.ndarray

    @property
    def n(self) -> int:
        return len(self.classes) - 1

    def sizes(self) -> np.ndarray:
        """Pixels (voxels) per instance, ``(n + 1,)`` (index 0: background)."""
        return np.bincount(self.ids.ravel(), minlength=self.n + 1)


def thing_indices(things: Sequence[str | int], class_names: Sequence[str]) -> list[int]:
    """Class indices of ``things`` (names, or indices as ints); unknown ones are a ConfigError listing the classes."""
    names = list(class_names)
    out = []
    for thing in things:
        if isinstance(thing, int) and not isinstance(thing, bool):
            if not 0 <= thing < len(names):
                raise ConfigError(f"thing class index {thing} is out of range; the classes are 0..{len(names) - 1} "
                                  f"({', '.join(names)})")
            out.append(thing)
        elif thing in names:
            out.append(names.index(thing))
        else:
            raise ConfigError(f"thing class {thing!r} is not one of the model's classes: {', '.join(names)}")
    if len(set(out)) != len(out):
        raise ConfigError(f"thing classes {list(things)} name a class twice")
    return out


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    if not 1 <= connectivity <= ndim:
        raise ConfigError(f"connectivity must be 1..{ndim} for {ndim}D data (1: faces only, {ndim}: also corners); "
                          f"got {connectivity}")
    return ndimage.generate_binary_structure(ndim, connectivity)


def split_touching(foreground: np.ndarray, border: np.ndarray, structure: np.ndarray,
                   markers: np.ndarray | None = None) -> np.ndarray:
    """Marker watershed: markers are the components of ``foreground & ~border`` (unless given), grown over
    ``foreground`` down the distance transform so border pixels go to the nearest object. Foreground that no marker
    reaches stays 0. Returns int32 labels, 0 = background."""
    if markers is None:
        markers, _ = ndimage.label(foreground & ~border, structure)
    if not markers.any():
        return np.zeros(foreground.shape, np.int32)
    distance = ndimage.distance_transform_edt(foreground)
    return watershed(-distance, markers, mask=foreground, connectivity=structure).astype(np.int32)


def drop_small(ids: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero instances smaller than ``min_size``, renumber the rest 1..m in order; returns (ids, old id per new id)."""
    sizes = np.bincount(ids.ravel())
    keep = np.flatnonzero(sizes >= max(min_size, 1))
    keep = keep[keep > 0]
    lut = np.zeros(len(sizes), np.int32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return lut[ids], np.concatenate([[0], keep])


class Instancer:
    """Cuts instances of the thing classes out of a semantic map.

    Args:
        things: thing classes, by name (or index) among ``class_names``; the others are stuff.
        class_names: the model's classes.
        min_size: instances with fewer pixels (voxels) are dropped.
        border: ``auto`` uses the border map when one is given, ``on`` requires one, ``off`` ignores it.
        border_threshold: border probability above which a pixel is border.
        connectivity: 1 joins pixels sharing a face, ``ndim`` also those sharing a corner.
    """

    def __init__(self, things: Sequence[str | int], class_names: Sequence[str], min_size: int = 0,
                 border: str | bool = "auto", border_threshold: float = 0.5, connectivity: int = 1) -> None:
        self.class_names = list(class_names)
        self.thing_ids = thing_indices(things, self.class_names)
        if not self.thing_ids:
            raise ConfigError("instance segmentation needs at least one thing class (e.g. instances.things=[building])")
        border = {True: "on", False: "off"}.get(border, border)
        if border not in BORDER_MODES:
            raise ConfigError(f"border must be one of {', '.join(BORDER_MODES)}; got {border!r}")
        if min_size < 0 or not 0.0 < border_threshold < 1.0:
            raise ConfigError(f"need min_size >= 0 and 0 < border_threshold < 1; got {min_size}, {border_threshold}")
        self.min_size, self.border, self.border_threshold = int(min_size), border, float(border_threshold)
        self.connectivity = int(connectivity)

    @property
    def stuff_ids(self) -> list[int]:
        return [i for i in range(len(self.class_names)) if i not in self.thing_ids]

    def uses_border(self, has_border: bool) -> bool:
        """Whether borders split instances, given whether the model predicts them (``on`` without one: ConfigError)."""
        if self.border == "on" and not has_border:
            raise ConfigError("instances.border=on but the model has no border channel; train it with "
                              "instances=border, or set instances.border=auto")
        return has_border and self.border != "off"

    def border_mask(self, border_prob: np.ndarray | None) -> np.ndarray | None:
        """Border pixels from the border probability map, or None when borders are not used."""
        if border_prob is None or not self.uses_border(True):
            return None
        return border_prob > self.border_threshold

    def __call__(self, semantic: np.ndarray, border_prob: np.ndarray | None = None) -> Instances:
        """Instances of ``semantic`` (class indices, 2D or 3D); ``border_prob`` (same shape) splits touching ones."""
        self.uses_border(border_prob is not None)
        border = self.border_mask(border_prob)
        structure = _structure(semantic.ndim, self.connectivity)
        ids = np.zeros(semantic.shape, np.int32)
        classes = [-1]
        for c in self.thing_ids:
            fg = semantic == c
            if border is None:
                labels, _ = ndimage.label(fg, structure)
            else:
                labels = split_touching(fg, border, structure)
            labels, _ = drop_small(labels, self.min_size)
            m = int(labels.max())
            if m:
                ids[labels > 0] = labels[labels > 0] + (len(classes) - 1)
                classes += [c] * m
        return Instances(ids, np.asarray(classes, np.int64))
