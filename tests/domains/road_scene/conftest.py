"""Shared fixtures for the road-scene domain: tiny generated datasets in each supported layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from domains.road_scene.synthetic import make_dataset


def _write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write ``array`` as PNG (creating parents), optionally converting to a PIL ``mode`` first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path)
    return path


def _random_photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random uint8 RGB photo ``(H, W, 3)``."""
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def write_png():
    """``write_png(path, array, mode=None)``: write a PNG, creating parent folders."""
    return _write_png


@pytest.fixture(scope="session")
def cityscapes_root(tmp_path_factory) -> Path:
    """Synthetic Cityscapes-layout set: 4 train, 3 val, 1 test scenes of 64x128."""
    return make_dataset(tmp_path_factory.mktemp("cs") / "cityscapes", n_train=4, n_val=3, size=(64, 128), seed=3,
                        n_test=1)


@pytest.fixture
def kitti_root(tmp_path) -> Path:
    """KITTI road layout with 5 images (24x40) whose gt holds road, non-road and don't-care colours."""
    rng = np.random.default_rng(0)
    root = tmp_path / "kitti"
    for i, cat in enumerate(["um", "umm", "uu", "um", "uu"]):
        num = f"{i:06d}"
        gt = np.zeros((24, 40, 3), np.uint8)
        gt[:, :] = (255, 0, 0)  # non-road
        gt[12:, 8:32] = (255, 0, 255)  # road
        gt[:3] = 0  # don't care
        _write_png(root / "training" / "image_2" / f"{cat}_{num}.png", _random_photo(rng, 24, 40))
        _write_png(root / "training" / "gt_image_2" / f"{cat}_road_{num}.png", gt)
        _write_png(root / "training" / "gt_image_2" / f"{cat}_lane_{num}.png", gt)  # lane gt: must be ignored
    return root
