"""Overlap and surface distances of masks in physical units, and summaries of measurement rows (core/measures.py)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from segsuite.core.io import write_csv, write_json
from segsuite.core.measures import format_summary, overlap_and_distance, summarize, surface_distances, surface_points

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy.*:FutureWarning")


def _sphere(shape, centre, radius_mm, spacing):
    grid = np.indices(shape, dtype=np.float64)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius_mm**2


def _blobs(shape, seed, level):
    return gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.0) > level


def _monai(reference, prediction, spacing):
    y, y_pred = (torch.from_numpy(m)[None, None].float() for m in (reference, prediction))
    hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)
    assd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=spacing)
    return float(hd95), float(assd)


def test_concentric_spheres():
    spacing, r1, r2 = (1.0, 1.0, 1.0), 6.0, 10.0
    inner, outer = (_sphere((31, 31, 31), (15, 15, 15), r, spacing) for r in (r1, r2))
    result = overlap_and_distance(outer, inner, spacing)
    # Voxelised spheres: surface voxels sit within ~1 voxel of the ideal radius.
    assert result["hd95_mm"] == pytest.approx(r2 - r1, abs=1.0)
    assert result["assd_mm"] == pytest.approx(r2 - r1, abs=1.0)
    assert result["dice"] == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))


def test_concentric_spheres_anisotropic():
    spacing = (0.8, 0.8, 2.0)
    inner, outer = (_sphere((41, 41, 17), (20, 20, 8), r, spacing) for r in (7.0, 13.0))
    result = overlap_and_distance(outer, inner, spacing)
    assert result["hd95_mm"] == pytest.approx(6.0, abs=2.0)  # coarse 2 mm slices: error up to one slice
    assert result["assd_mm"] == pytest.approx(6.0, abs=1.0)


@pytest.mark.parametrize("axis, shift", [(0, 3), (1, 1), (2, 2)])
def test_shifted_cube_anisotropic(axis, shift):
    spacing = np.array([0.7, 1.1, 2.5])
    reference = np.zeros((24, 24, 16), bool)
    reference[6:16, 6:16, 4:12] = True
    prediction = np.roll(reference, shift, axis=axis)
    result = overlap_and_distance(reference, prediction, spacing)
    # Whole faces move by shift * spacing and no surface voxel is farther: HD95 is exact.
    assert result["hd95_mm"] == pytest.approx(shift * spacing[axis], abs=1e-9)
    brute = cdist(surface_points(reference, spacing), surface_points(prediction, spacing)).min(axis=1)
    brute_back = cdist(surface_points(prediction, spacing), surface_points(reference, spacing)).min(axis=1)
    assert result["assd_mm"] == pytest.approx(np.concatenate([brute, brute_back]).mean(), rel=1e-12)
    size = (10, 10, 8)[axis]
    assert result["dice"] == pytest.approx((size - shift) / size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_monai_on_random_blobs(seed):
    spacing = (0.9, 1.3, 2.7)
    reference, prediction = _blobs((40, 36, 20), seed, 0.05), _blobs((40, 36, 20), seed + 10, 0.08)
    ours = overlap_and_distance(reference, prediction, spacing)
    hd95, assd = _monai(reference, prediction, spacing)
    # Same surface definition (6-connected erosion, border voxels count) and exact Euclidean distances as
    # MONAI, so only MONAI's float32 arithmetic separates the results.
    assert ours["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assert ours["assd_mm"] == pytest.approx(assd, rel=1e-5)


def test_masks_touching_the_border_match_monai():
    reference = np.zeros((20, 20, 10), bool)
    reference[:8, 5:15, :] = True
    prediction = np.zeros_like(reference)
    prediction[2:10, 4:16, 2:] = True
    ours = overlap_and_distance(reference, prediction, (1.0, 1.0, 3.0))
    assert (ours["hd95_mm"], ours["assd_mm"]) == pytest.approx(_monai(reference, prediction, (1.0, 1.0, 3.0)), rel=1e-5)


def test_directed_distances_are_exact_nearest_neighbours():
    reference, prediction = _blobs((20, 20, 12), 3, 0.0), _blobs((20, 20, 12), 4, 0.0)
    spacing = np.array([1.0, 2.0, 3.0])
    ref_to_pred, pred_to_ref = surface_distances(reference, prediction, spacing)
    a, b = surface_points(reference, spacing), surface_points(prediction, spacing)
    np.testing.assert_allclose(ref_to_pred, cdist(a, b).min(axis=1))
    np.testing.assert_allclose(pred_to_ref, cdist(b, a).min(axis=1))


def test_empty_masks_have_defined_values():
    empty, full = np.zeros((10, 10, 4), bool), np.zeros((10, 10, 4), bool)
    full[2:5, 2:5, 1:3] = True
    assert overlap_and_distance(empty, empty, (1, 1, 1)) == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "assd_mm": 0.0}
    diagonal = math.sqrt(10**2 + 20**2 + 12**2)
    for ref, pred in ((empty, full), (full, empty)):
        result = overlap_and_distance(ref, pred, (1.0, 2.0, 3.0))
        assert result == {
            "dice": 0.0,
            "iou": 0.0,
            "hd95_mm": pytest.approx(diagonal),
            "assd_mm": pytest.approx(diagonal),
        }


def test_surface_metrics_not_slower_than_monai():
    reference = _sphere((96, 96, 96), (48, 48, 48), 30.0, (1, 1, 1))
    prediction = _sphere((96, 96, 96), (50, 47, 49), 28.0, (1, 1, 1))
    spacing = (1.0, 1.0, 2.0)

    def best_of_three(function):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    ours = best_of_three(lambda: overlap_and_distance(reference, prediction, spacing))
    y, y_pred = (torch.from_numpy(m)[None, None].float() for m in (reference, prediction))
    monai = best_of_three(
        lambda: compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)
    )
    assert ours <= 1.2 * monai + 0.02, (ours, monai)  # ours also computes Dice, IoU and ASSD


def test_summary_table_and_writers(tmp_path):
    rows = [
        {"case": "a", "label": "liver", "value": 1, "dice": 0.8, "hd95_mm": 2.0, "rel_volume_error": math.nan},
        {"case": "b", "label": "liver", "value": 1, "dice": 0.6, "hd95_mm": 4.0, "rel_volume_error": 0.1},
    ]
    metrics = ("dice", "hd95_mm", "rel_volume_error")
    summary = summarize(rows, metrics)
    assert summary[0]["n"] == 2 and summary[0]["dice_mean"] == pytest.approx(0.7)
    assert summary[0]["dice_sd"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert summary[0]["rel_volume_error_mean"] == pytest.approx(0.1) and summary[0]["rel_volume_error_sd"] == 0.0
    table = format_summary(summary, metrics)
    assert "liver" in table and "0.7 ± 0.141" in table and "hd95_mm" in table.splitlines()[0]
    csv_path = write_csv(tmp_path / "rows.csv", rows)  # the core's writers, as the scorer uses them
    assert csv_path.read_text().splitlines()[1] == "a,liver,1,0.8,2.0,"
    json_path = write_json(tmp_path / "metrics.json", {"rows": rows, "summary": summary})
    assert json.loads(json_path.read_text())["rows"][0]["rel_volume_error"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "rows.csv"]
    by_case = summarize(rows, ["dice"], group="case")
    assert [e["case"] for e in by_case] == ["a", "b"] and by_case[0]["dice_sd"] == 0.0
    assert format_summary(by_case, ["dice"], group="case").splitlines()[0].startswith("case")
