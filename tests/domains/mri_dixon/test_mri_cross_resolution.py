"""Across resolutions through predict: a tiny 2D model, and a tiny 3D U-Net, trained on the phantom at 2 x 2 x 4.5
mm score the same anatomy stored at 4 x 4 x 6 mm with permuted, flipped axes, with and without resampling to the
plan's target spacing (the reader resamples, the engine predicts slices or 3D windows, restore brings probabilities
back, argmax on the input's grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segsuite.core.models import create_dynunet, create_model
from segsuite.domains.mri_dixon.cases import list_cases, read_dataset_json
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.phantom import make_dataset

ANATOMY = dict(shape=(48, 48, 16), spacing=(2.0, 2.0, 4.5))  # a 96 x 96 x 72 mm field of view


def _train(root, steps: int = 80, spatial_dims: int = 2) -> tuple[torch.nn.Module, dict]:
    """2D: a ResNet-18 U-Net cut to 3 stages on 48 x 48 slices, batches of 8; 3D: a DynUNet of 8 base filters laid
    out from the plan on 32 x 32 x 16 patches, batches of 2 (about 25 s for 120 steps on a loaded CPU)."""
    patch = [48, 48] if spatial_dims == 2 else [32, 32, 16]
    datasets = build_datasets(str(root), val_fraction=0.25, patch_size=patch, foreground_fraction=0.5,
                              spatial_dims=spatial_dims)
    torch.manual_seed(0)
    if spatial_dims == 2:
        net = create_model("unet", "resnet18", in_channels=4, classes=7, encoder_depth=3, decoder_channels=[32, 16, 8])
    else:
        spacing = datasets["train"].meta["target_spacing"]
        net = create_dynunet(4, 7, patch, spacing, base_filters=8, max_filters=64)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(datasets["train"], batch_size=8 if spatial_dims == 2 else 2, shuffle=True)
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


def _mean_dice(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    scores = [2 * ((prediction == k) & (label == k)).sum() / max(1, (prediction == k).sum() + (label == k).sum())
              for k in range(1, num_classes)]
    return float(np.mean(scores))


def _pipeline_dice(net: torch.nn.Module, meta: dict, root, name: str, out) -> float:
    """Predict case ``name`` of ``root`` through the core pipeline (reader -> engine -> restore -> writer) and score
    the written label volume against the case's label file on the scan's own stored grid."""
    from segsuite.core.contracts import DataMeta, Job, ModelInfo
    from segsuite.core.inference import InferenceOptions, TilePredictor
    from segsuite.core.pipeline import run_predict
    from segsuite.domains.mri_dixon.io import read_volume
    from segsuite.domains.mri_dixon.reader import DixonReader
    from segsuite.domains.mri_dixon.writer import DixonWriter

    model = ModelInfo(TilePredictor(net, "cpu"), DataMeta.from_dict(meta), 7, False)
    files = sorted((root / "imagesTr").glob(f"{name}_000?.nii.gz"))
    run_predict(DixonReader(), DixonWriter(), Job(model, options=InferenceOptions(None, (0, 0), 16)),
                [str(f) for f in files], out)
    predicted, label = read_volume(out), read_volume(root / "labelsTr" / f"{name}.nii.gz")
    assert predicted.shape == label.shape and np.array_equal(predicted.affine, label.affine)
    return _mean_dice(predicted.array, label.array, 7)


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_predict_resamples_to_the_training_spacing_and_back(tmp_path, spatial_dims):
    """Through ``predict``: the coarse, permuted, flipped scan scores within 0.05 of a held-out scan at the training
    resolution, and clearly worse when the model's resampling is switched off (3D: Gaussian-blended patch windows
    with half a patch of overlap)."""
    fine = make_dataset(tmp_path / "fine", n_cases=5, seed=0, **ANATOMY)
    coarse = make_dataset(tmp_path / "coarse", n_cases=1, seed=99, **ANATOMY, voxel_spacing=(4.0, 4.0, 6.0),
                          axes=(2, 0, 1), flips=(True, False, True))
    held_out = make_dataset(tmp_path / "held", n_cases=1, seed=7, **ANATOMY)
    net, meta = _train(fine, steps=120, spatial_dims=spatial_dims)
    assert meta["spatial_dims"] == spatial_dims
    name = list_cases(read_dataset_json(coarse))[0]
    same = _pipeline_dice(net, meta, held_out, name, tmp_path / "held.nii.gz")
    on = _pipeline_dice(net, meta, coarse, name, tmp_path / "on.nii.gz")
    off = _pipeline_dice(net, {**meta, "resample": False}, coarse, name, tmp_path / "off.nii.gz")
    print(f"{spatial_dims}D mean Dice through predict: training resolution {same:.3f}; 4 x 4 x 6 mm permuted with "
          f"resampling {on:.3f}, without {off:.3f}")
    assert on > same - 0.05 and on > off + 0.15, (same, on, off)


def test_device_resampling_predicts_what_the_scipy_path_did(tmp_path, monkeypatch):
    """Predict through the pipeline with the images resampled by torch (the default: the slice axis whole, each
    slice in-plane as the engine reads it) and by scipy's zoom (the old path): on a phantom stored at 4 x 4 x 6 mm with
    permuted, flipped axes, the label volumes agree to Dice >= 0.999 per class and carry exactly the same affine."""
    from segsuite.domains.mri_dixon import reader, resample
    from segsuite.domains.mri_dixon.io import read_volume

    def scipy_zoom(image: torch.Tensor, shape) -> torch.Tensor:  # scipy's cubic spline, channel by channel
        return torch.from_numpy(np.stack([resample._zoom_to(c.numpy(), shape, 3) for c in image.cpu()]))

    fine = make_dataset(tmp_path / "fine", n_cases=2, seed=0, **ANATOMY)
    coarse = make_dataset(tmp_path / "coarse", n_cases=1, seed=99, **ANATOMY, voxel_spacing=(4.0, 4.0, 6.0),
                          axes=(2, 0, 1), flips=(True, False, True))
    meta = build_datasets(str(fine), patch_size=[48, 48], val_cases=["phantom_001"])["train"].meta
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 7, 3, padding=1)).eval()
    name = list_cases(read_dataset_json(coarse))[0]
    _pipeline_dice(net, meta, coarse, name, tmp_path / "torch.nii.gz")
    monkeypatch.setattr(reader, "zoom_torch", scipy_zoom)
    _pipeline_dice(net, meta, coarse, name, tmp_path / "scipy.nii.gz")
    old, new = read_volume(tmp_path / "scipy.nii.gz"), read_volume(tmp_path / "torch.nii.gz")
    assert np.array_equal(old.affine, new.affine) and old.shape == new.shape
    for k in np.unique(old.array):
        a, b = old.array == k, new.array == k
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999, k


def _whole_volume_restore(self, logits: torch.Tensor) -> torch.Tensor:
    """``OpenedCase.restore`` as it was before the slab restore: every slice's probabilities interpolated at once
    (trilinear), as log-probabilities, then the orientation undone (the reference of the test below; the case's
    image is resampled whole, so it is on the model's grid)."""
    from segsuite.domains.mri_dixon.io import from_canonical_ornt

    if self.volumetric:
        canonical = logits
    else:
        plane = np.delete(self.case.image.shape[1:], self.axis)
        canonical = logits[:, :, : plane[0], : plane[1]].movedim(1, self.axis + 1)
    if self.grid is not None and tuple(canonical.shape[1:]) != self.grid:
        k = self.num_classes
        x = torch.cat([canonical[:k].softmax(0), canonical[k:]])[None]
        back = torch.nn.functional.interpolate(x, size=self.grid, mode="trilinear", align_corners=False)[0]
        canonical = torch.cat([back[:k].clamp_min(1e-12).log(), back[k:]])
    ornt = from_canonical_ornt(self.case.reference.affine)
    flipped = [a + 1 for a, flip in enumerate(ornt[:, 1]) if flip == -1]
    oriented = canonical.flip(flipped) if flipped else canonical
    return oriented.permute(0, *(int(a) + 1 for a in np.argsort(ornt[:, 0])))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_streamed_prediction_predicts_what_the_whole_volume_path_did(tmp_path, monkeypatch, spatial_dims):
    """The pipeline as it streams (a 2D model's slices resampled in-plane as the engine reads them, restored slab by
    slab as they come out, argmax on the input grid, no probability volume) and the whole-volume path of before
    (the image resampled whole, every probability interpolated at once), on a phantom stored at 4 x 4 x 6 mm with
    permuted, flipped axes: label volumes with Dice >= 0.999 per class and exactly the same affine."""
    from segsuite.domains.mri_dixon import reader
    from segsuite.domains.mri_dixon.io import read_volume
    from segsuite.domains.mri_dixon.reader import OpenedCase

    fine = make_dataset(tmp_path / "fine", n_cases=2, seed=0, **ANATOMY)
    coarse = make_dataset(tmp_path / "coarse", n_cases=1, seed=99, **ANATOMY, voxel_spacing=(4.0, 4.0, 6.0),
                          axes=(2, 0, 1), flips=(True, False, True))
    patch = [48, 48] if spatial_dims == 2 else [32, 32, 16]
    meta = build_datasets(str(fine), patch_size=patch, val_cases=["phantom_001"], spatial_dims=spatial_dims)
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    torch.manual_seed(0)
    net = torch.nn.Sequential(conv(4, 8, 3, padding=1), torch.nn.ReLU(), conv(8, 7, 3, padding=1)).eval()
    name = list_cases(read_dataset_json(coarse))[0]
    _pipeline_dice(net, meta["train"].meta, coarse, name, tmp_path / "slabs.nii.gz")
    whole = reader._resample
    monkeypatch.setattr(reader, "_resample", lambda case, target, device, later=(): whole(case, target, device))
    monkeypatch.setattr(OpenedCase, "stack", None)  # the pipeline's whole-item path, through restore
    calls = []
    monkeypatch.setattr(OpenedCase, "restore", lambda self, x: calls.append(x.shape) or _whole_volume_restore(self, x))
    _pipeline_dice(net, meta["train"].meta, coarse, name, tmp_path / "whole.nii.gz")
    old, new = read_volume(tmp_path / "whole.nii.gz"), read_volume(tmp_path / "slabs.nii.gz")
    assert np.array_equal(old.affine, new.affine) and old.shape == new.shape
    assert len(calls) == 1 and len(np.unique(old.array)) >= 3  # the reference went the old way; several classes
    for k in np.unique(old.array):
        a, b = old.array == k, new.array == k
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999, k
