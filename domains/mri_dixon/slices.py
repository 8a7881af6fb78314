"""Per-slice measurements of a label volume: for each label and each slice along an anatomical axis, the
cross-sectional area in cm² and the mean fat fraction (muscle and fat studies measure cross-sections, e.g. at L3).

The axis is named in RAS+ terms (``axial``: slices across S, ``coronal``: across A, ``sagittal``: across R) and found
in the file's array axes from its affine (nibabel's ``io_orientation``: the array axis closest to it), so a file
stored with permuted or flipped axes gives the same table as its RAS+ twin. Per slice:

* ``slice_index``: 0, 1, ... in RAS+ order along the axis (left to right, posterior to anterior, inferior to
  superior), i.e. the index in the volume brought to RAS+, which the model's ``axis`` also counts in; the file's own
  array index may run the other way;
* ``position_mm``: the world (scanner RAS+) coordinate along the axis of the slice's centre, to align slices
  across scans;
* ``area_cm2``: voxel count x the in-plane voxel face area, |c_i x c_j| of the affine's two in-plane columns (their
  norms' product on every non-sheared grid);
* ``mean_ff``: mean voxel FF (:func:`.fatfraction.fat_fraction_map`, the case's own signal threshold) over the
  label's voxels with enough signal on that slice; empty without water and fat, or without such voxels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from nibabel.orientations import io_orientation

from segsuite.core.errors import ConfigError

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}  # the RAS+ world axis each kind of slice is cut across
COLUMNS = ["case", "label", "slice_index", "position_mm", "area_cm2", "mean_ff"]


def check_axis(axis: str | None, key: str) -> str | None:
    """``axis`` if it names a slice orientation (or is None: off); else a :class:`ConfigError` naming ``key``."""
    if axis is not None and axis not in AXES:
        raise ConfigError(f"{key}={axis!r}: choose {', '.join(AXES)} or null (no per-slice CSV)")
    return axis


def array_axis(affine: np.ndarray, axis: str) -> tuple[int, bool]:
    """The array axis of a volume with ``affine`` that runs closest to ``axis``'s world axis, and whether it runs
    against RAS+ (a flipped axis)."""
    ornt = io_orientation(affine)  # per array axis: (world axis, +1 or -1)
    index = int(np.flatnonzero(ornt[:, 0] == AXES[axis])[0])
    return index, bool(ornt[index, 1] < 0)


def slice_geometry(affine: np.ndarray, shape: tuple[int, ...], axis: str) -> tuple[int, np.ndarray, np.ndarray, float]:
    """For slices along ``axis``: the array axis, the array index of each slice in RAS+ order ``(N,)``, their centres'
    world coordinates along the axis ``(N,)`` (same order), and the in-plane voxel face area in mm²."""
    index, flipped = array_axis(affine, axis)
    plane = [a for a in range(3) if a != index]
    columns = np.asarray(affine, np.float64)[:3, :3]
    # |c_i x c_j|: a voxel's face in the slice plane; the product of the two column norms when they are orthogonal
    # (every scanner grid), and still exact on a sheared one
    face_mm2 = float(np.linalg.norm(np.cross(columns[:, plane[0]], columns[:, plane[1]])))
    centre = (np.asarray(shape, np.float64) - 1) / 2
    centre[index] = 0
    world = AXES[axis]
    first = float(columns[world] @ centre + affine[world, 3])  # world coordinate of slice 0's centre
    slices = np.arange(shape[index])[::-1] if flipped else np.arange(shape[index])
    return index, slices, first + slices * float(columns[world, index]), face_mm2


def slice_measurements(case: str, labels: np.ndarray, affine: np.ndarray, values: Mapping[str, int], axis: str,
                       ff: np.ndarray | None = None, valid: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per label of ``values`` (name -> value in ``labels``) and slice, labels in order of value, slices in
    RAS+ order (module docstring). ``labels`` ``(X, Y, Z)`` on the grid of ``affine``; ``ff`` and ``valid`` (the FF
    map and its valid-signal mask, same shape) give ``mean_ff``."""
    index, slices, positions, face_mm2 = slice_geometry(affine, labels.shape, axis)
    stack = np.moveaxis(labels, index, 0)[slices]  # (N, P, Q), slices in RAS+ order
    if ff is not None and valid is not None:
        ff_stack, valid_stack = (np.moveaxis(a, index, 0)[slices] for a in (ff, valid))
    rows = []
    for name, value in sorted(values.items(), key=lambda item: item[1]):
        mask = stack == value
        areas = mask.sum(axis=(1, 2)) * face_mm2 / 100.0
        means = np.full(len(slices), np.nan)
        if ff is not None and valid is not None:
            inside = mask & valid_stack
            count = inside.sum(axis=(1, 2))
            total = np.where(inside, ff_stack, 0).sum(axis=(1, 2), dtype=np.float64)
            np.divide(total, count, out=means, where=count > 0)
        rows += [{"case": case, "label": name, "slice_index": k, "position_mm": float(positions[k]),
                  "area_cm2": float(areas[k]), "mean_ff": float(means[k])} for k in range(len(slices))]
    return rows


def measured_labels(labels: Mapping[str, int]) -> dict[str, int]:
    """The labels that are measured: all but ``background`` (value 0) and ``ignore``."""
    skipped = ("background", "ignore")
    return {name: int(value) for name, value in labels.items() if int(value) != 0 and name not in skipped}
