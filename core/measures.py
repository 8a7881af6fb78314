"""Per-item measurements written once for every domain: overlap and surface distances of two masks in physical units
(any number of dims, any pixel or voxel spacing), and the per-group mean and standard deviation of measurement rows
with a plain-text table of them.

Surfaces and distances follow MONAI (``get_mask_edges`` + ``get_surface_distance``): the surface of a mask is
``mask & ~binary_erosion(mask)`` (face-connected; pixels on the array border are surface), and a surface pixel's
distance is the Euclidean distance to the nearest surface pixel of the other mask (exact ``cKDTree`` queries on
surface-pixel centres: the numbers of ``distance_transform_edt(sampling=spacing)``; HD95 and ASSD from one query, where
MONAI computes the distances once per measure). HD95 is ``max(P95(ref -> pred), P95(pred -> ref))``; ASSD the mean of
both directed distance sets pooled. Empty masks have finite values: both empty: Dice 1, IoU 1, HD95 0, ASSD 0; one
empty: Dice 0, IoU 0, HD95 and ASSD the image diagonal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.ndimage import binary_erosion, find_objects
from scipy.spatial import cKDTree


def _bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Slices of ``mask``'s bounding box grown by ``margin`` (clipped to the array); mask must be non-empty."""
    box = find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, mask.shape))


def surface_points(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Centres of the surface pixels of a non-empty mask in physical units, ``(N, ndim)``."""
    box = _bounding_box(mask)
    cropped = mask[box]
    surface = cropped & ~binary_erosion(cropped)  # border_value=0: pixels on the array border are surface
    offset = np.array([s.start for s in box])
    return (np.argwhere(surface) + offset) * np.asarray(spacing, dtype=np.float64)


def surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances ``(reference -> prediction, prediction -> reference)``; both masks non-empty."""
    ref_points, pred_points = surface_points(reference, spacing), surface_points(prediction, spacing)
    ref_to_pred = cKDTree(pred_points).query(ref_points, workers=-1)[0]
    pred_to_ref = cKDTree(ref_points).query(pred_points, workers=-1)[0]
    return ref_to_pred, pred_to_ref


def overlap_and_distance(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Dice, IoU, HD95 and ASSD (in the unit of ``spacing``, keys ``hd95_mm``, ``assd_mm``) of two boolean masks;
    empty masks as in the module docstring."""
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


def summarize(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], group: str = "label") -> list[dict]:
    """Per value of ``group`` (in order of appearance): ``n`` rows and ``<metric>_mean`` / ``<metric>_sd`` (NaN
    skipped, sample SD; NaN when no value is finite)."""
    summary = []
    for key in dict.fromkeys(row[group] for row in rows):
        selected = [row for row in rows if row[group] == key]
        entry = {group: key, "n": len(selected)}
        for metric in metrics:
            values = np.array([row[metric] for row in selected], dtype=np.float64)
            values = values[np.isfinite(values)]
            entry[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
            entry[f"{metric}_sd"] = float(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size else math.nan)
        summary.append(entry)
    return summary


def format_summary(summary: Sequence[Mapping[str, Any]], metrics: Sequence[str], group: str = "label") -> str:
    """Plain-text table of :func:`summarize`'s entries: one line per group, ``mean ± sd`` per metric."""
    def cell(entry: Mapping[str, Any], metric: str) -> str:
        mean, sd = entry[f"{metric}_mean"], entry[f"{metric}_sd"]
        return "n/a" if math.isnan(mean) else f"{mean:.4g} ± {sd:.3g}"

    header = [group, "n", *metrics]
    lines = [[str(entry[group]), str(entry["n"])] + [cell(entry, m) for m in metrics] for entry in summary]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(text.ljust(w) for text, w in zip(row, widths)) for row in [header, *lines])
