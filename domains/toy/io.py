"""Toy domain I/O: arrays ``(C, H, W)`` in ``.npy`` files in, class maps ``(H, W)`` uint8 ``.npy`` files out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.domain import BaseReader, BaseSink, BaseWriter, OpenedArrays
from segsuite.core.errors import DataError
from segsuite.core.files import find_inputs
from segsuite.core.inference import ArraySource
from segsuite.domains.toy.data import toy_sample


def _load(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as a .npy array: {err}") from None


class NpyReader(BaseReader):
    """A ``.npy`` file, a folder of them, a glob pattern or a list of these (outputs then go to a folder, under the
    same names)."""

    def find(self, input: Any, job: Job) -> list[Item]:
        found = find_inputs(input, [".npy"], ".npy arrays (C, H, W)", recursive=False)
        return [Item(path.stem, path, rel or Path()) for path, rel in found]

    def check(self, item: Item, job: Job) -> None:
        image = item.source if isinstance(item.source, np.ndarray) else _load(item.source, "r")  # the header only
        _check_shape(item.name, image, job)

    def open(self, item: Item, job: Job) -> OpenedArrays:
        image = item.source if isinstance(item.source, np.ndarray) else _load(item.source)
        return OpenedArrays([ArraySource(image)])

    def from_array(self, array: np.ndarray, job: Job) -> OpenedArrays:
        """An in-memory image ``(C, H, W)`` (``segsuite.core.api.Segmenter.predict``); the toy data need no
        preparation."""
        _check_shape("the array", array, job)
        return OpenedArrays([ArraySource(array)])

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """Two small inputs from the built-in generator, written into ``folder`` once (the demo page's examples)."""
        meta = job.model.meta
        paths = []
        for seed in (1, 2):
            path = folder / f"toy_{seed}.npy"
            if not path.exists():
                np.save(path, toy_sample(seed, 96, meta.in_channels, meta.num_classes, meta.ignore_index)[0])
            paths.append(path)
        return paths


def _check_shape(name: str, image: np.ndarray, job: Job) -> None:
    channels = job.model.meta.in_channels
    if image.ndim != 3 or image.shape[0] != channels:
        raise DataError(f"{name} has shape {tuple(image.shape)}; expected (C, H, W) with C={channels}")


class NpyWriter(BaseWriter):
    """Class ids ``(H, W)`` uint8 as ``.npy``."""

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        return {"classes": output / f"{item.rel.stem or item.name}.npy" if folder else output}

    def sink(self, item: Item, opened: OpenedArrays, paths: Mapping[str, Path], job: Job) -> NpySink:
        return NpySink(paths["classes"])


@dataclass
class NpySink(BaseSink):
    path: Path
    classes: list[np.ndarray] = field(default_factory=list)

    def update(self, prediction: Prediction) -> None:
        self.classes.append(prediction.classes)

    def close(self) -> Path:
        with open(self.path, "wb") as fh:
            np.save(fh, self.classes[0].astype(np.uint8))
        return self.path
