"""The land-cover domain through the domain contract (tests/contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from segsuite.domains.landcover.synthetic import make_scene
from tests.contract import DomainContract


class TestLandCoverContract(DomainContract):
    domain = "landcover"

    @pytest.fixture
    def checkpoint(self, tiny_checkpoint, synthetic_root) -> Path:
        data = {"root": synthetic_root, "patch_size": "[32,32]", "holdout_block": 32}
        self.evaluate_overrides = tuple(f"domain.datamodule.datasets.{k}={v}" for k, v in data.items())
        return tiny_checkpoint

    def write_inputs(self, folder: Path, count: int, size: int = 72) -> list[Path]:
        labels = folder.with_name(folder.name + "_labels")
        for path in (folder, labels):
            path.mkdir(parents=True, exist_ok=True)
        return [make_scene(folder / f"scene_{i}.tif", labels / f"scene_{i}.tif", size, size + 8, seed=i)[0]
                for i in range(count)]

    def corrupt(self, path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # truncated: the directory at the end is lost

    def geometry(self, path: Path) -> tuple:
        """CRS, transform, size, and where the raster is nodata (an output: 255 there, its nodata value)."""
        with rasterio.open(path) as src:
            invalid = ~(src.read_masks() > 0).all(axis=0)
            if src.count == 1:  # the class raster
                assert src.nodata == 255 and (src.read(1)[invalid] == 255).all()
            return src.crs.to_wkt(), tuple(src.transform), src.width, src.height, np.packbits(invalid).tobytes()

    def main_output(self, output: Path, input: Path) -> Path:
        return output / input.name if output.is_dir() else output
