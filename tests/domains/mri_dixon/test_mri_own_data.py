"""Your own nnU-Net data set in one command: channels, labels, spacing and patch size come from the data."""

import json

import nibabel as nib
import numpy as np

from segsuite.core.checkpoint import describe
from segsuite.core.train import train
from tests.helpers import compose_config

QUIET = ["trainer.max_epochs=1", "logger=none", "trainer.enable_model_summary=false",
         "trainer.enable_progress_bar=false"]


def _dataset(root, cases: int = 4, shape=(40, 36, 12), spacing=(1.2, 1.2, 2.5)):
    """One T1-like channel and two labels (a sphere and a box) on a grid unlike the phantom's."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    x, y, z = np.indices(shape)
    for i in range(cases):
        label = np.zeros(shape, np.uint8)
        cx, cy = 12 + 2 * i, 14 + i
        label[(x - cx) ** 2 + (y - cy) ** 2 + ((z - 6) * 2) ** 2 < 36] = 1
        label[26:34, 8:20, 3:9] = 2
        image = (100 + 200 * (label == 1) + 400 * (label == 2) + rng.normal(0, 10, shape)).astype(np.float32)
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"case_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, "lesion": 1, "organ": 2},
        "numTraining": cases, "file_ending": ".nii.gz"}))
    return root


def test_an_nnunet_data_set_trains_with_only_its_root(tmp_path):
    root = _dataset(tmp_path / "Dataset001_Mine")
    cfg = compose_config("train", ["domain=mri_dixon", f"domain.datamodule.datasets.root={root}",
                                   f"run_dir={tmp_path / 'run'}", *QUIET])
    train(cfg)
    info = describe(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert info["model"]["in_channels"] == 1 and info["num_classes"] == 3
    assert info["class_names"] == ["background", "lesion", "organ"]
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan == info["data_meta"]["plan"]
    np.testing.assert_allclose(info["data_meta"]["target_spacing"], [1.2, 1.2, 2.5], rtol=1e-6)  # float32 headers
