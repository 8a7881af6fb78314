"""The microscopy domain through the domain contract (tests/contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from segsuite.domains.microscopy.data import synthetic_image, write_tiff
from segsuite.domains.microscopy.io import result_name
from tests.contract import DomainContract


class TestMicroscopyContract(DomainContract):
    domain = "microscopy"

    @pytest.fixture
    def checkpoint(self, checkpoint, ctc_root) -> Path:
        self.evaluate_overrides = (f"domain.datamodule.datasets.root={ctc_root}",
                                   "domain.datamodule.datasets.patch_size=32")
        return checkpoint

    def write_inputs(self, folder: Path, count: int, size: int = 72) -> list[Path]:
        for i in range(count):
            write_tiff(folder / f"t{i:03d}.tif", synthetic_image(i, size)[0], 0.5)
        return sorted(folder.glob("*.tif"))

    def geometry(self, path: Path) -> tuple[int, ...]:
        return tifffile.imread(path).shape

    def main_output(self, output: Path, input: Path) -> Path:
        return output / result_name(Path(input.name)) if output.is_dir() else output

    def classes(self, path: Path) -> np.ndarray:
        return tifffile.imread(path)
