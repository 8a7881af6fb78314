"""Shared fixtures for the MRI Dixon domain: affines, NIfTI/DICOM writers, a tiny phantom data set, an
untrained 1x1-convolution checkpoint and one tiny training run through the real entry point."""

from __future__ import annotations

import locale
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from segsuite.core.task import SegmentationTask
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.phantom import make_dataset
from tests.helpers import run_script

PHANTOM_SHAPE = (32, 32, 12)
PHANTOM_SPACING = (3.0, 3.0, 6.0)
# A training run of a few seconds: 3 phantom cases of 32 x 32 x 8 (2 train, 1 val), 4 epochs of 4 steps
# on 32 x 32 crops without augmentation, a ResNet-18 U-Net cut to 3 stages (small checkpoints), a quick learning rate.
TINY_DATA = [
    "domain.datamodule.datasets.synthetic_cases=3", "domain.datamodule.datasets.synthetic_shape=[32,32,8]",
    "domain.datamodule.datasets.patch_size=[32,32]", "domain.datamodule.datasets.samples_per_epoch=32",
]
TINY_TRAIN = [
    "domain=mri_dixon", "trainer.max_epochs=4", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "logger=none", "optimizer.lr=3e-3", "domain.datamodule.batch_size=8",
    "domain.in_channels=4", "domain.num_classes=7", "augmentation=none",
    "+model.encoder_depth=3", "+model.decoder_channels=[32,16,8]", *TINY_DATA,
]


def rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    """Rotation about x then z, ``(3, 3)``."""
    ax, az = np.deg2rad([ax_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def make_affine(
    spacing=(1.5, 0.8, 3.0), flips=(1, 1, 1), angles=(7.0, 15.0), origin=(-40.5, 22.25, 13.0)
) -> np.ndarray:
    """Oblique, anisotropic affine with optional axis flips, rounded to float32 (NIfTI-representable)."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) @ np.diag(flips) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine.astype(np.float32).astype(np.float64)


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, sform_code: int = 2, qform_code: int = 1) -> Path:
    """Write a NIfTI with the given codes (nibabel)."""
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine if sform_code else None, code=sform_code)
    img.set_qform(affine, code=qform_code)
    nib.save(img, str(path))
    return path


def affine_to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """RAS+ ``(X, Y, Z)`` array + affine -> LPS+ SimpleITK image."""
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)))
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    lps = np.diag([-1.0, -1.0, 1.0])
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps @ affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin((lps @ affine[:3, 3]).tolist())
    return image


def write_dicom_series(directory: Path, array: np.ndarray, affine: np.ndarray, uid: str, description: str) -> None:
    """Write an int16 ``(X, Y, Z)`` volume as an MR DICOM series (one file per slice) with geometry tags.

    GDCM's writer leaves the process locale's LC_CTYPE at "C" (ASCII text I/O afterwards, e.g. in
    ``subprocess.run(text=True)``), so it is restored here.
    """
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        _write_dicom_series(directory, array, affine, uid, description)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def _write_dicom_series(directory: Path, array: np.ndarray, affine: np.ndarray, uid: str, description: str) -> None:
    image = affine_to_sitk(array.astype(np.int16), affine)
    d = image.GetDirection()
    common = {
        "0008|0060": "MR",
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0021": "20240101",
        "0008|0031": "120000",
        "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
        "0020|000e": uid,
        "0008|103e": description,
        "0020|0037": "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        for tag, value in common.items():
            plane.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        plane.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in position))
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0008|0018", f"{uid}.{k + 1}")
        writer.SetFileName(str(directory / f"{uid.split('.')[-1]}_{k:03d}.dcm"))
        writer.Execute(plane)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A 5-case phantom data set (plus 1 test case) in the nnU-Net layout; treat as read-only."""
    root = tmp_path_factory.mktemp("phantom") / "Dataset001_Dixon"
    return make_dataset(root, n_cases=5, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, seed=7, n_test=1)


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """A writable 3-case phantom data set to corrupt in tests."""
    return make_dataset(tmp_path / "ds", n_cases=3, shape=(16, 16, 6), spacing=(4.0, 4.0, 8.0), seed=1)


@pytest.fixture
def affine_factory():
    """:func:`make_affine` for tests (conftest helpers are reached through fixtures, not imports)."""
    return make_affine


@pytest.fixture
def nifti_writer():
    return save_nifti


@pytest.fixture
def dicom_writer():
    return write_dicom_series


@pytest.fixture
def sitk_image_factory():
    return affine_to_sitk


@pytest.fixture(scope="session")
def conv_checkpoint(tmp_path_factory, phantom_root) -> Path:
    """An untrained checkpoint for the phantom's channels: a fixed random 1x1 convolution (pointwise, so
    its predictions do not depend on tiling, padding or orientation). Loads like a trained one."""
    meta = build_datasets(str(phantom_root), patch_size=[32, 32])["train"].meta
    torch.manual_seed(0)
    model = {"_target_": "torch.nn.Conv2d", "in_channels": meta["in_channels"], "out_channels": meta["num_classes"],
             "kernel_size": 1}
    task = SegmentationTask(model=model, num_classes=meta["num_classes"], ignore_index=meta["ignore_index"],
                            class_names=meta["class_names"], data_meta=meta, domain="mri_dixon")
    path = tmp_path_factory.mktemp("conv_checkpoint") / "conv.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return path


def _train(base: Path, *extra: str) -> dict:
    """One tiny training on a phantom generated into ``base``: its data root, checkpoint and data overrides."""
    root = base / "phantom"
    data = [f"domain.datamodule.datasets.root={root}", *TINY_DATA, *extra]
    run_script("train", f"hydra.run.dir={base / 'run'}", *TINY_TRAIN, *data)
    return {"root": root, "checkpoint": base / "run" / "checkpoints" / "last.ckpt", "data_overrides": data}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> dict:
    """One tiny training on a generated phantom through ``scripts/train.py``: its data root and checkpoint."""
    return _train(tmp_path_factory.mktemp("mri_run"))


@pytest.fixture(scope="session")
def water_run(tmp_path_factory) -> dict:
    """The tiny training of a water-only model (a case is then one file, ``CASE_0000.nii.gz``)."""
    return _train(tmp_path_factory.mktemp("mri_water_run"), "domain.datamodule.datasets.channels=[water]",
                  "domain.in_channels=1")
