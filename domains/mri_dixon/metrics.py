"""Per-label segmentation measures of a Dixon case in physical units (overlap and surface distances in mm from
:mod:`segsuite.core.measures`, volumes in mL, mean FF inside each mask) and the overlay PNG of an evaluated case.

Undefined volume values are NaN (summaries skip them, JSON writes ``null``): ``rel_volume_error`` for an empty
reference, mean FF of an empty mask or without FF images.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from segsuite.core.errors import DataError
from segsuite.core.measures import overlap_and_distance
from segsuite.core.overlay import default_colors

from .fatfraction import fat_fraction_map
from .io import Volume, grid_difference, to_canonical

METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "ref_volume_ml", "pred_volume_ml", "rel_volume_error", "ref_mean_ff",
           "pred_mean_ff")


def _require_grid(reference: Volume, other: Volume | None, what: str, case: str) -> None:
    diff = grid_difference(reference, other) if other is not None else None
    if diff:
        raise DataError(f"case {case!r}: {what} {other.path!r} is not on the grid of reference {reference.path!r}: "
                        f"{diff}")


def evaluate_case(case: str, reference: Volume, prediction: Volume, labels: dict[str, int],
                  water: Volume | None = None, fat: Volume | None = None) -> list[dict]:
    """One row per label of ``labels`` (name -> value, as in dataset.json; ``background`` and ``ignore`` skipped):
    overlap, surface distances, volumes (mL) and mean FF inside the reference and predicted masks (with ``water`` and
    ``fat``). All volumes share the reference grid; spacing comes from its affine."""
    for what, other in (("prediction", prediction), ("water image", water), ("fat image", fat)):
        _require_grid(reference, other, what, case)
    spacing = reference.spacing
    voxel_ml = float(np.prod(spacing)) / 1000.0
    ff, valid = fat_fraction_map(water.array, fat.array) if water is not None and fat is not None else (None, None)
    rows = []
    for name, value in sorted(labels.items(), key=lambda item: item[1]):
        if name in ("background", "ignore"):
            continue
        ref_mask, pred_mask = reference.array == value, prediction.array == value
        ref_ml, pred_ml = ref_mask.sum() * voxel_ml, pred_mask.sum() * voxel_ml
        rows.append({"case": case, "label": name, "value": int(value),
                     **overlap_and_distance(ref_mask, pred_mask, spacing),
                     "ref_volume_ml": float(ref_ml), "pred_volume_ml": float(pred_ml),
                     "rel_volume_error": float((pred_ml - ref_ml) / ref_ml) if ref_ml > 0 else math.nan,
                     "ref_mean_ff": _masked_mean(ff, valid, ref_mask),
                     "pred_mean_ff": _masked_mean(ff, valid, pred_mask)})
    return rows


def _masked_mean(ff: np.ndarray | None, valid: np.ndarray | None, mask: np.ndarray) -> float:
    if ff is None:
        return math.nan
    inside = valid & mask
    return float(ff[inside].mean()) if inside.any() else math.nan


def _overlay_slices(reference: np.ndarray, prediction: np.ndarray, count: int) -> list[int]:
    """``count`` evenly spread axial indices among slices holding reference or predicted foreground."""
    occupied = np.flatnonzero(((reference > 0) | (prediction > 0)).any(axis=(0, 1)))
    if occupied.size == 0:
        occupied = np.arange(reference.shape[2])
    picks = np.linspace(0, occupied.size - 1, min(count, occupied.size)).round().astype(int)
    return [int(occupied[i]) for i in np.unique(picks)]


def _legend_handles(shown: list[tuple[str, np.ndarray]]) -> list[Line2D]:
    """Legend entries: one colour line per label shown, then what solid and dashed mean."""
    handles = [Line2D([], [], color=color, linewidth=2.0, label=name) for name, color in shown]
    return handles + [Line2D([], [], color="black", linestyle=style, linewidth=1.0, label=meaning)
                      for style, meaning in (("solid", "reference (solid)"), ("dashed", "prediction (dashed)"))]


def save_overlay_png(
    path: str | os.PathLike,
    image: Volume,
    reference: Volume,
    prediction: Volume,
    labels: dict[str, int],
    colors: dict[str, tuple[int, int, int]] | None = None,
    n_slices: int = 4,
    overwrite: bool = False,
) -> Path:
    """Axial slices of ``image`` with reference (solid) and predicted (dashed) contours of each label, and a legend
    below naming the colour of each label drawn and what solid and dashed mean.

    Slices are taken from the canonical RAS+ volume and shown in radiological view (patient right on the left,
    anterior up). ``colors`` maps label names to RGB 0..255 (default: :func:`segsuite.core.overlay.default_colors`).
    """
    _require_grid(image, reference, "reference", str(path))
    _require_grid(image, prediction, "prediction", str(path))
    img, ref, pred = (to_canonical(v).array for v in (image, reference, prediction))
    slices = _overlay_slices(ref, pred, n_slices)
    figure = Figure(figsize=(max(3 * len(slices), 6), 3.9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    low, high = np.percentile(img, (1, 99))
    drawn = [name for name in labels if name not in ("background", "ignore")]
    colors = {**dict(zip(drawn, default_colors(len(drawn)).tolist())), **(colors or {})}
    palette = {name: np.array(colors[name]) / 255 for name in drawn}
    shown: dict[str, np.ndarray] = {}
    for column, index in enumerate(slices):
        axes = figure.add_subplot(1, len(slices), column + 1)
        axes.imshow(img[:, :, index].T, cmap="gray", origin="lower", vmin=low, vmax=high)
        for name in drawn:
            for mask, style in ((ref, "solid"), (pred, "dashed")):
                plane = (mask[:, :, index] == labels[name]).T
                if plane.any():
                    axes.contour(plane, levels=[0.5], colors=[palette[name]], linestyles=style, linewidths=1.0)
                    shown[name] = palette[name]
        axes.invert_xaxis()  # radiological view
        axes.set_title(f"slice {index}", fontsize=8)
        axes.set_axis_off()
    handles = _legend_handles([(name, shown[name]) for name in drawn if name in shown])
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8,
                  frameon=False)
    figure.savefig(path, format="png")  # the core stages the report folder (``overwrite``: checked there)
    return Path(path)
