"""Per-instance measurements of an instance map: size (pixels, area, or volume in mL), centroid, bounding box and
the mean of any co-registered value map (e.g. the fat fraction), as rows for a CSV."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from segsuite.core.instances.extract import Instances

AXES = {2: ("row", "col"), 3: ("i", "j", "k")}


def measure_instances(instances: Instances, class_names: Sequence[str], spacing: Sequence[float] | None = None,
                      to_world: Callable[[np.ndarray], np.ndarray] | None = None,
                      values: Mapping[str, np.ndarray] | None = None,
                      cell_size: float | None = None) -> list[dict[str, Any]]:
    """One row per instance of a 2D ``(H, W)`` or 3D ``(D, H, W)`` instance map.

    Columns: ``id, class, pixels`` (``voxels`` in 3D); with ``spacing`` (physical size per array axis; mm for
    volumes) ``area`` (2D, spacing units squared) or ``volume_ml`` (3D, spacing in mm); the centroid in array
    coordinates (``centroid_row/col`` or ``centroid_i/j/k``) and, with ``to_world`` (``(N, ndim)`` array coordinates ->
    ``(N, ndim)`` world), in world coordinates (``centroid_x/y(/z)``); the box ``<axis>0, <axis>1`` (end exclusive);
    and ``mean_<name>`` for each map in ``values``. ``cell_size`` is one pixel's area (voxel's volume) when it is not
    the product of ``spacing`` (a sheared grid: ``|det|`` of the affine's linear part).
    """
    ids, ndim = instances.ids, instances.ids.ndim
    axes = AXES[ndim]
    index = np.arange(1, instances.n + 1)
    sizes = instances.sizes()
    boxes = ndimage.find_objects(ids, max_label=instances.n)
    centroids = np.array(ndimage.center_of_mass(np.ones(ids.shape), ids, index)).reshape(-1, ndim)
    world = to_world(centroids) if to_world is not None and len(index) else None
    means = {name: ndimage.mean(v, ids, index) for name, v in (values or {}).items()}
    rows = []
    for k, i in enumerate(index):
        if sizes[i] == 0:
            continue
        row: dict[str, Any] = {"id": int(i), "class": class_names[instances.classes[i]],
                               "voxels" if ndim == 3 else "pixels": int(sizes[i])}
        if spacing is not None or cell_size is not None:
            physical = float(sizes[i] * (cell_size if cell_size is not None else np.prod(spacing)))
            row.update({"volume_ml": physical / 1000.0} if ndim == 3 else {"area": physical})
        row.update({f"centroid_{a}": float(v) for a, v in zip(axes, centroids[k])})
        if world is not None:
            row.update({f"centroid_{a}": float(v) for a, v in zip("xyz", world[k])})
        for a, s in zip(axes, boxes[i - 1]):
            row.update({f"{a}0": int(s.start), f"{a}1": int(s.stop)})
        row.update({f"mean_{name}": float(m[k]) for name, m in means.items()})
        rows.append(row)
    return rows
