"""Training augmentation: changes samples, keeps labels and shapes, follows torch's seed, off gives the old samples."""

from __future__ import annotations

import pytest
import torch

from segsuite.core.errors import ConfigError
from segsuite.domains.mri_dixon.augment import Augmentation
from segsuite.domains.mri_dixon.dataset import build_datasets

LABELS = set(range(7)) | {255}


def _samples(root, n=6, seed=0, **options) -> list[dict]:
    dataset = build_datasets(str(root), val_fraction=0.4, **{"patch_size": [32, 32], **options})["train"]
    torch.manual_seed(seed)
    return [dataset[i] for i in range(n)]


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"]) for x, y in zip(a, b))


# every transform fires, so one sample shows them all
ALWAYS = dict(rotate_prob=1.0, scale_prob=1.0, elastic_prob=1.0, noise_prob=1.0, blur_prob=1.0, brightness_prob=1.0,
              contrast_prob=1.0, lowres_prob=1.0, gamma_prob=1.0, gamma_inverted_prob=0.5, flip_prob=0.5,
              flip_axes=["A", "S"])


@pytest.mark.parametrize("dims, patch", [(2, [24, 16]), (3, [16, 16, 8])])
def test_augmented_samples_differ_and_keep_labels_and_shapes(phantom_root, dims, patch):
    plain = _samples(phantom_root, spatial_dims=dims, patch_size=patch)
    augmented = _samples(phantom_root, spatial_dims=dims, patch_size=patch, augmentation=Augmentation(**ALWAYS))
    for a, b in zip(plain, augmented):
        assert b["image"].shape == a["image"].shape and b["image"].dtype == torch.float32
        assert b["mask"].shape == a["mask"].shape and b["mask"].dtype == torch.int64
        assert set(b["mask"].unique().tolist()) <= LABELS and torch.isfinite(b["image"]).all()
    assert not any(torch.equal(a["image"], b["image"]) for a, b in zip(plain, augmented))


def test_deterministic_under_torch_seed(phantom_root):
    options = dict(patch_size=[24, 24], augmentation=Augmentation(**ALWAYS))
    assert _same(_samples(phantom_root, seed=3, **options), _samples(phantom_root, seed=3, **options))
    assert not _same(_samples(phantom_root, seed=3, **options), _samples(phantom_root, seed=4, **options))


def test_no_augmentation_gives_the_plain_samples(phantom_root, compose_cfg, tmp_path):
    """``augmentation=none`` (an empty node) gives exactly the samples of a build without augmentation, whose crops
    are those of the slice sampler before augmentation existed (same draws from torch's generator)."""
    cfg = compose_cfg("train", [f"run_dir={tmp_path}", "domain=mri_dixon", "augmentation=none"])
    off = cfg.domain.datamodule.datasets.augmentation
    assert not off
    assert _same(_samples(phantom_root, augmentation=off), _samples(phantom_root))


def test_only_label_safe_flips(phantom_root):
    """Flips only along the named canonical axes; a left-right flip is refused with lateralised labels."""
    flip = Augmentation(**{**{k: 0.0 for k in ALWAYS if k.endswith("_prob")}, "flip_prob": 1.0, "flip_axes": ["A"]})
    for i in range(3):  # one seed per sample: the augmentation draws from torch's generator after the crop
        a, b = _samples(phantom_root, n=1, seed=i)[0], _samples(phantom_root, n=1, seed=i, augmentation=flip)[0]
        # axial slices run along (R, A): only dim 1 (A) is mirrored
        assert torch.equal(b["mask"], a["mask"].flip(1)) and torch.equal(b["image"], a["image"].flip(2))
    transform = Augmentation(flip_axes=["R", "A"])
    with pytest.raises(ConfigError, match="lateralised labels \\['kidney_left', 'kidney_right'\\]"):
        transform.transform([0, 1], [16, 16], ["background", "liver", "kidney_left", "kidney_right"])
    with pytest.raises(ConfigError, match="flip_axes \\['X'\\] unknown"):
        Augmentation(flip_axes=["X"])
