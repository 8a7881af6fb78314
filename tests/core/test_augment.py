"""nnU-Net's augmentation on MONAI (core/augment.py): shapes, labels, seeds, margins, flips, settings checks."""

from __future__ import annotations

import pytest
import torch

from segsuite.core.augment import NnUNetAugmentation
from segsuite.core.errors import ConfigError

OFF = {"rotate_prob": 0.0, "scale_prob": 0.0, "noise_prob": 0.0, "blur_prob": 0.0, "brightness_prob": 0.0,
       "contrast_prob": 0.0, "lowres_prob": 0.0, "gamma_prob": 0.0, "gamma_inverted_prob": 0.0, "flip_prob": 0.0}
ALWAYS = {**{k: 1.0 for k in OFF}, "elastic_prob": 1.0, "gamma_inverted_prob": 0.5, "flip_prob": 0.5}


def _sample(shape, margin):
    size = [n + 2 * m for n, m in zip(shape, margin)]
    torch.manual_seed(0)
    mask = torch.randint(0, 4, size)
    mask[(slice(0, 2),)] = 255  # some ignored pixels
    return {"image": torch.randn(2, *size), "mask": mask}


@pytest.mark.parametrize("patch", [[24, 16], [16, 12, 8]])
def test_transforms_keep_shapes_dtypes_and_labels_and_follow_the_seed(patch):
    augmentation = NnUNetAugmentation(**ALWAYS)
    margin = augmentation.margin(patch)
    assert all(m > 0 for m in margin)
    sample = _sample(patch, margin)
    transform = augmentation.transform(range(len(patch)), patch, spacing=[1.0] * len(patch))
    outputs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outputs.append(transform(sample))
    out = outputs[0]
    assert out["image"].shape == (2, *patch) and out["image"].dtype == torch.float32
    assert torch.isfinite(out["image"]).all()
    assert out["mask"].shape == tuple(patch) and out["mask"].dtype == torch.int64
    assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}
    assert torch.equal(outputs[0]["image"], outputs[1]["image"]) and torch.equal(outputs[0]["mask"], outputs[1]["mask"])
    assert not torch.equal(outputs[0]["image"], outputs[2]["image"])


def test_off_crops_the_centre_and_flips_only_the_named_dims():
    assert NnUNetAugmentation(**OFF).margin([32, 20]) == [0, 0]
    sample = _sample([8, 6], [2, 1])
    plain = NnUNetAugmentation(**OFF).transform([], [8, 6])(sample)
    assert torch.equal(plain["mask"], sample["mask"][2:10, 1:7])
    assert torch.equal(plain["image"], sample["image"][:, 2:10, 1:7])
    flipped = NnUNetAugmentation(**{**OFF, "flip_prob": 1.0}).transform([1], [8, 6])(sample)
    assert torch.equal(flipped["mask"], plain["mask"].flip(1)) and torch.equal(flipped["image"], plain["image"].flip(2))


def test_margin_covers_rotation_and_scaling_at_most_doubled():
    assert NnUNetAugmentation(rotate_prob=1.0, scale_prob=0.0, rotate_deg=45.0).margin([100]) == [21]  # sqrt(2) - 1
    assert NnUNetAugmentation(rotate_prob=0.0, scale_prob=1.0, scale_range=(0.7, 1.4)).margin([100]) == [20]
    assert NnUNetAugmentation(rotate_prob=1.0, scale_prob=1.0, scale_range=(0.5, 3.0)).margin([10]) == [5]


def test_probabilities_outside_zero_one_are_refused():
    with pytest.raises(ConfigError, match="probabilities must be in \\[0, 1\\].*noise_prob"):
        NnUNetAugmentation(noise_prob=1.5)
