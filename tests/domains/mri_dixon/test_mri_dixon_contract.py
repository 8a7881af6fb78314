"""The MRI Dixon domain through the domain contract (tests/contract.py), with a water-only model trained on the
phantom: an input is one case, ``CASE_0000.nii.gz`` (nnU-Net naming), and a folder of them is an images folder."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segsuite.domains.mri_dixon.phantom import make_case
from tests.contract import DomainContract

pytestmark = pytest.mark.slow  # the shared training run takes ~15-30 s on 2 CPU cores


class TestMriDixonContract(DomainContract):
    domain = "mri_dixon"
    overrides = ("device=cpu",)

    @pytest.fixture
    def checkpoint(self, water_run) -> Path:
        self.evaluate_overrides = tuple(water_run["data_overrides"])
        return water_run["checkpoint"]

    def write_inputs(self, folder: Path, count: int, shape=(32, 28, 10)) -> list[Path]:
        """Phantom water images on oblique LPS-like grids, with sform code 2 (aligned) and qform code 1 (scanner)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(count):
            channels, _, affine, _ = make_case(shape, seed=i)
            img = nib.Nifti1Image(channels["water"], affine)
            img.set_sform(affine, code=2)
            img.set_qform(affine, code=1)
            paths.append(folder / f"case{i}_0000.nii.gz")
            nib.save(img, paths[-1])
        return paths

    def corrupt(self, path: Path) -> None:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # a truncated .nii.gz

    def geometry(self, path: Path) -> tuple:
        img = nib.load(path)
        header = img.header
        return (img.shape, img.affine.tobytes(), header.get_sform().tobytes(), header.get_qform().tobytes(),
                int(header["sform_code"]), int(header["qform_code"]))

    def main_output(self, output: Path, input: Path) -> Path:
        return output / f"{input.name[: -len('_0000.nii.gz')]}.nii.gz"  # an output without .nii.gz is a folder


def test_output_geometry_is_the_inputs_exactly(water_run, tmp_path):
    """The label volume of a single case written as OUT.nii.gz: uint8, the input's shape, affine (bit for bit) and
    qform/sform codes."""
    contract = TestMriDixonContract()
    (image,) = contract.write_inputs(tmp_path / "in", 1)
    assert contract.predict(water_run["checkpoint"], image, tmp_path / "seg.nii.gz") == 0
    written = nib.load(tmp_path / "seg.nii.gz")
    assert contract.geometry(tmp_path / "seg.nii.gz") == contract.geometry(image)
    assert written.get_data_dtype() == np.uint8 and len(np.unique(np.asanyarray(written.dataobj))) > 1
