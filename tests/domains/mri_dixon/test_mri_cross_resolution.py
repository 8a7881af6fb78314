"""Across resolutions through the training-side path: a tiny 2D model trained on the phantom at 2 x 2 x 4.5 mm
scores the same anatomy stored at 4 x 4 x 6 mm with permuted, flipped axes, with and without resampling to the
plan's target spacing (to_target -> slices through the net -> probabilities_back -> argmax on the input's grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models import create_model
from domains.mri_dixon.dataset import build_datasets, list_cases, load_case, read_dataset_json
from domains.mri_dixon.io import voxel_spacing
from domains.mri_dixon.phantom import make_dataset
from domains.mri_dixon.resample import probabilities_back, to_target

ANATOMY = dict(shape=(48, 48, 16), spacing=(2.0, 2.0, 4.5))  # a 96 x 96 x 72 mm field of view


def _train(root, steps: int = 80) -> tuple[torch.nn.Module, dict]:
    datasets = build_datasets(str(root), val_fraction=0.25, patch_size=[48, 48], foreground_fraction=0.5)
    torch.manual_seed(0)
    net = create_model("unet", "resnet18", in_channels=4, classes=7, encoder_depth=3, decoder_channels=[32, 16, 8])
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(datasets["train"], batch_size=8, shuffle=True)
    step = 0
    while step < steps:
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(net(batch["image"]), batch["mask"], ignore_index=255)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step == steps:
                break
    return net.eval(), datasets["train"].meta


def _probabilities(net: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Axial slices of ``(C, X, Y, Z)`` through the net: softmax ``(K, X, Y, Z)``."""
    with torch.no_grad():
        slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, 3, 0)))  # (Z, C, X, Y)
        return torch.softmax(net(slices), 1).permute(1, 2, 3, 0).numpy()


def _mean_dice(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    scores = [2 * ((prediction == k) & (label == k)).sum() / max(1, (prediction == k).sum() + (label == k).sum())
              for k in range(1, num_classes)]
    return float(np.mean(scores))


@pytest.mark.slow
def test_resampling_to_the_target_spacing_recovers_a_coarser_scan(tmp_path):
    fine = make_dataset(tmp_path / "fine", n_cases=4, seed=0, **ANATOMY)
    coarse = make_dataset(tmp_path / "coarse", n_cases=2, seed=99, **ANATOMY, voxel_spacing=(4.0, 4.0, 6.0),
                          axes=(2, 0, 1), flips=(True, False, True))
    net, meta = _train(fine)
    spec = read_dataset_json(coarse)
    scores = {"off": [], "on": []}
    for name in list_cases(spec):
        case = load_case(spec, name, [0, 1, 2, 3])  # canonical RAS+, on the scan's own 4 x 4 x 6 mm grid
        assert case.label.shape == (24, 24, 12)
        scores["off"].append(_mean_dice(_probabilities(net, case.image).argmax(0), case.label, 7))
        image, _ = to_target(case.image, voxel_spacing(case.affine), meta["target_spacing"])
        probs = probabilities_back(_probabilities(net, image), case.label.shape)
        assert probs.shape == (7, *case.label.shape)
        scores["on"].append(_mean_dice(probs.argmax(0), case.label, 7))
    off, on = np.mean(scores["off"]), np.mean(scores["on"])
    print(f"mean Dice over labels at 4 x 4 x 6 mm: resampling off {off:.3f}, on {on:.3f}")
    assert on > off + 0.15 and on > 0.5, (off, on)
