"""Metrics: analytic shapes, agreement with MONAI, empty masks, volumes/FF, summaries, writers, overlays."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from segsuite.core.errors import DataError
from segsuite.core.io import write_csv, write_json
from segsuite.domains.mri_dixon.io import Volume
from segsuite.domains.mri_dixon.metrics import (
    evaluate_case,
    format_summary,
    overlap_and_distance,
    save_overlay_png,
    summarize,
    surface_distances,
    surface_points,
)
from segsuite.domains.mri_dixon.phantom import LABELS, make_case

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


@pytest.fixture(scope="module")
def phantom_case():
    channels, label, affine, true_ff = make_case(shape=(40, 40, 12), spacing=(2.0, 2.0, 5.0), seed=5)
    return (
        {name: Volume(array, affine, f"{name}.nii.gz") for name, array in channels.items()},
        Volume(label, affine, "ref.nii.gz"),
        true_ff,
    )


def test_evaluate_case_rows(phantom_case):
    channels, reference, true_ff = phantom_case
    predicted = reference.array.copy()
    predicted[predicted == LABELS["spleen"]] = 0  # miss the spleen entirely
    prediction = Volume(predicted, reference.affine, "pred.nii.gz")
    rows = evaluate_case("p5", reference, prediction, LABELS, channels["water"], channels["fat"])
    assert [row["label"] for row in rows] == [n for n in LABELS if n != "background"]
    by_label = {row["label"]: row for row in rows}
    liver = by_label["liver"]
    assert liver["dice"] == 1.0 and liver["hd95_mm"] == 0.0 and liver["rel_volume_error"] == 0.0
    assert liver["ref_volume_ml"] == pytest.approx((reference.array == 1).sum() * 2 * 2 * 5 / 1000)
    assert liver["ref_mean_ff"] == pytest.approx(true_ff["liver"], abs=0.02)
    spleen = by_label["spleen"]
    assert spleen["dice"] == 0.0 and spleen["pred_volume_ml"] == 0.0 and spleen["rel_volume_error"] == -1.0
    assert math.isnan(spleen["pred_mean_ff"]) and spleen["hd95_mm"] == pytest.approx(np.linalg.norm([80, 80, 60]))


def test_evaluate_case_requires_same_grid(phantom_case):
    _, reference, _ = phantom_case
    shifted = reference.affine.copy()
    shifted[1, 3] += 1.0
    with pytest.raises(DataError, match="case 'p5': prediction 'pred.nii.gz'.*origin"):
        evaluate_case("p5", reference, Volume(reference.array, shifted, "pred.nii.gz"), LABELS)


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


def test_overlay_png(tmp_path, phantom_case):
    channels, reference, _ = phantom_case
    colors = {"liver": (165, 80, 40), "spleen": (150, 60, 170)}
    path = save_overlay_png(tmp_path / "p5.png", channels["water"], reference, reference, LABELS, colors, n_slices=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100
        pixels = np.asarray(image.convert("RGB"))
    legend = pixels[int(0.85 * len(pixels)) :].reshape(-1, 3)  # the legend strip under the slices
    for color in colors.values():  # each label's colour line is in the legend
        assert (np.abs(legend.astype(int) - color).max(axis=1) <= 2).sum() >= 10, color
