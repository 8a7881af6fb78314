"""The toy domain through the domain contract (tests/contract.py), and the contract's pure-core invariants (bad
options, existing outputs, a killed run's staging), which run with this domain only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segsuite.domains.toy.data import toy_sample
from tests.contract import CoreInvariants, DomainContract


class TestToyContract(CoreInvariants, DomainContract):
    domain = "toy"
    export = False  # tests/core/test_export.py exports the toy checkpoint

    @pytest.fixture
    def checkpoint(self, toy_run) -> Path:
        return toy_run / "checkpoints" / "last.ckpt"

    def write_inputs(self, folder: Path, count: int, size: int = 70) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(count):
            np.save(folder / f"img_{i}.npy", toy_sample(i, size, 3, 3, 255)[0])
            paths.append(folder / f"img_{i}.npy")
        return paths

    def geometry(self, path: Path) -> tuple[int, ...]:
        return np.load(path).shape[-2:]

    def main_output(self, output: Path, input: Path) -> Path:
        return output

    def slow_input(self, folder: Path) -> Path:
        self.write_inputs(folder, 2, size=700)  # 18 U-Net tiles of 256 x 256: seconds on one thread
        return folder
