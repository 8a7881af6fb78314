"""Per-label rows of a Dixon case (volumes, FF, distances in mm on the case's grid) and the overlay PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from segsuite.core.errors import DataError
from segsuite.domains.mri_dixon.io import Volume
from segsuite.domains.mri_dixon.metrics import evaluate_case, save_overlay_png
from segsuite.domains.mri_dixon.phantom import LABELS, make_case


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
