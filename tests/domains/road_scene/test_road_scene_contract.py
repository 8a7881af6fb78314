"""The road-scene domain through the domain contract (tests/contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from segsuite.domains.road_scene.synthetic import render_scene
from tests.contract import DomainContract

pytestmark = pytest.mark.slow  # the shared short training run, and predict processes


class TestRoadSceneContract(DomainContract):
    domain = "road_scene"

    @pytest.fixture
    def checkpoint(self, road_run) -> Path:
        self.evaluate_overrides = (f"domain.datamodule.datasets.root={road_run['data']}",)
        return road_run["ckpt"]

    def write_inputs(self, folder: Path, count: int, size: tuple[int, int] = (40, 72)) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"frame_{i}.png" for i in range(count)]
        for i, path in enumerate(paths):
            Image.fromarray(render_scene(size, i)[0]).save(path)
        return paths

    def geometry(self, path: Path) -> tuple[int, int]:
        with Image.open(path) as image:
            return image.size

    def main_output(self, output: Path, input: Path) -> Path:
        return output / "labels" / input.name  # always a folder; Cityscapes-format label ids
