"""Per-label segmentation metrics in physical units, summaries and overlay PNGs.

Surfaces and distances follow MONAI (``get_mask_edges`` + ``get_surface_distance``): the surface of a mask is
``mask & ~binary_erosion(mask)`` (6-connected; voxels on the array border are surface), and a surface voxel's
distance is the Euclidean distance in mm to the nearest surface voxel of the other mask (exact ``cKDTree`` queries on
surface-voxel centres: the numbers of ``distance_transform_edt(sampling=spacing)``, faster than MONAI). HD95 is
``max(P95(ref -> pred), P95(pred -> ref))``; ASSD the mean of both directed distance sets pooled.

Empty masks have finite values: both empty: Dice 1, IoU 1, HD95 0, ASSD 0; one empty: Dice 0, IoU 0, HD95 and ASSD
the image diagonal in mm. Undefined volume values are NaN (summaries skip them, JSON writes ``null``):
``rel_volume_error`` for an empty reference, mean FF of an empty mask or without FF images.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.ndimage import binary_erosion, find_objects
from scipy.spatial import cKDTree

from segsuite.core.errors import DataError

from .fatfraction import fat_fraction_map
from .io import Volume, grid_difference, to_canonical

TAB10 = [np.array(matplotlib.colormaps["tab10"](i)[:3]) for i in range(10)]  # label colours without a class map

METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "ref_volume_ml", "pred_volume_ml", "rel_volume_error", "ref_mean_ff",
           "pred_mean_ff")


def _bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Slices of ``mask``'s bounding box grown by ``margin`` (clipped to the array); mask must be non-empty."""
    box = find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, mask.shape))


def surface_points(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Centres of the surface voxels of a non-empty mask in mm, ``(N, ndim)``."""
    box = _bounding_box(mask)
    cropped = mask[box]
    surface = cropped & ~binary_erosion(cropped)  # border_value=0: voxels on the array border are surface
    offset = np.array([s.start for s in box])
    return (np.argwhere(surface) + offset) * np.asarray(spacing, dtype=np.float64)


def surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm ``(reference -> prediction, prediction -> reference)``; both non-empty."""
    ref_points, pred_points = surface_points(reference, spacing), surface_points(prediction, spacing)
    ref_to_pred = cKDTree(pred_points).query(ref_points, workers=-1)[0]
    pred_to_ref = cKDTree(ref_points).query(pred_points, workers=-1)[0]
    return ref_to_pred, pred_to_ref


def overlap_and_distance(reference: np.ndarray, prediction: np.ndarray, spacing) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and ASSD (mm) of two boolean masks; empty masks as in the module docstring."""
    reference, prediction = np.asarray(reference, dtype=bool), np.asarray(prediction, dtype=bool)
    spacing = np.asarray(spacing, dtype=np.float64)
    ref_count, pred_count = int(reference.sum()), int(prediction.sum())
    if ref_count == 0 and pred_count == 0:
        return {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "assd_mm": 0.0}
    if ref_count == 0 or pred_count == 0:
        diagonal = float(np.linalg.norm(np.array(reference.shape) * spacing))
        return {"dice": 0.0, "iou": 0.0, "hd95_mm": diagonal, "assd_mm": diagonal}
    intersection = int(np.logical_and(reference, prediction).sum())
    ref_to_pred, pred_to_ref = surface_distances(reference, prediction, spacing)
    return {"dice": 2 * intersection / (ref_count + pred_count),
            "iou": intersection / (ref_count + pred_count - intersection),
            "hd95_mm": float(max(np.percentile(ref_to_pred, 95), np.percentile(pred_to_ref, 95))),
            "assd_mm": float(np.concatenate([ref_to_pred, pred_to_ref]).mean())}


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


def summarize(rows: list[dict], metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """Per label: ``n`` cases and ``<metric>_mean`` / ``<metric>_sd`` (NaN-skipping, sample SD)."""
    summary = []
    for label in dict.fromkeys(row["label"] for row in rows):
        selected = [row for row in rows if row["label"] == label]
        entry = {"label": label, "n": len(selected)}
        for metric in metrics:
            values = np.array([row[metric] for row in selected], dtype=np.float64)
            values = values[np.isfinite(values)]
            entry[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
            entry[f"{metric}_sd"] = float(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size else math.nan)
        summary.append(entry)
    return summary


def format_summary(summary: list[dict], metrics: tuple[str, ...] = METRICS) -> str:
    """Plain-text table: one line per label, ``mean ± sd`` per metric."""
    header = ["label", "n", *metrics]
    lines = [[entry["label"], str(entry["n"])] + [_mean_sd(entry, m) for m in metrics] for entry in summary]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header, *lines])


def _mean_sd(entry: dict, metric: str) -> str:
    mean, sd = entry[f"{metric}_mean"], entry[f"{metric}_sd"]
    return "n/a" if math.isnan(mean) else f"{mean:.4g} ± {sd:.3g}"


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

    Slices are taken from the canonical RAS+ volume and shown in radiological view (patient right on
    the left, anterior up). ``colors`` maps label names to RGB 0..255 (default: matplotlib's tab10 cycle).
    """
    _require_grid(image, reference, "reference", str(path))
    _require_grid(image, prediction, "prediction", str(path))
    img, ref, pred = (to_canonical(v).array for v in (image, reference, prediction))
    slices = _overlay_slices(ref, pred, n_slices)
    figure = Figure(figsize=(max(3 * len(slices), 6), 3.9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    low, high = np.percentile(img, (1, 99))
    drawn = [name for name in labels if name not in ("background", "ignore")]
    palette = {name: np.array(colors[name]) / 255 if colors and name in colors else TAB10[i % len(TAB10)]
               for i, name in enumerate(drawn)}
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
