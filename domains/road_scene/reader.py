"""Road-scene inputs: an image, or every image under a folder (recursively), decoded and normalised as in training
(``meta["normalization"]``) and resized by ``meta["train_scale"]`` when the model was trained at reduced resolution;
the logits are upsampled back to the full frame. Frames are decoded in a thread pool ahead of the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segsuite.core.contracts import Item, Job
from segsuite.core.domain import BaseOpened, BaseReader
from segsuite.core.errors import ConfigError
from segsuite.core.files import find_inputs
from segsuite.core.images import IMAGE_SUFFIXES, image_size, read_pixels, rgb_pixels, unit_range
from segsuite.core.inference import ArraySource
from segsuite.core.workers import Prefetch, cores

META_KEYS = ("normalization", "class_names", "class_colors", "label_format")


def _normalise(image: torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """``(image - mean) / std`` per channel of ``(3, ...)`` values in [0, 1], as the training datasets do."""
    shape = (3, *[1] * (image.ndim - 1))
    mean, std = (torch.tensor(norm[k], dtype=torch.float32).view(shape) for k in ("mean", "std"))
    return (image - mean) / std


@dataclass
class Frame:
    """A decoded frame: model input ``(3, h, w)`` float32 and the RGB image ``(H, W, 3)`` (uint8, or float32 in
    [0, 1] from 16-bit), for overlays."""

    input: np.ndarray
    rgb: np.ndarray


def load_frame(path: Path, meta: Any) -> Frame:
    """Decode ``path`` (grey/RGBA converted as in training), resize by ``meta["train_scale"]`` and normalise."""
    return prepare_frame(read_pixels(path), meta)


def prepare_frame(pixels: np.ndarray, meta: Any) -> Frame:
    """RGB ``pixels`` ``(H, W, 3)`` (uint8, or float32 in [0, 1]) resized by ``meta["train_scale"]`` and
    normalised as in training."""
    size, scale = pixels.shape[:2], float(meta.get("train_scale", 1.0))
    target = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))  # rounded as in training
    if pixels.dtype == np.uint8 and target == size:
        # 8-bit at full size: one table lookup per value gives exactly the training arithmetic, much faster
        table = _normalise(torch.arange(256, dtype=torch.float32).expand(3, 256) / 255.0, meta["normalization"])
        model_input = np.empty((3, *size), dtype=np.float32)
        for c in range(3):
            np.take(table[c].numpy(), pixels[..., c], out=model_input[c])
    else:
        image = torch.from_numpy(unit_range(pixels)).permute(2, 0, 1)  # (3, H, W) in [0, 1]
        if target != size:  # the same resampling as training's augmentation (bilinear, antialiased)
            image = F.interpolate(image[None], size=target, mode="bilinear", align_corners=False, antialias=True)[0]
        model_input = _normalise(image, meta["normalization"]).contiguous().numpy()
    return Frame(model_input, pixels)


@dataclass
class OpenedFrame(BaseOpened):
    """One frame predicted whole (tiled when larger than the tile); logits upsampled to the full frame."""

    frame: Frame

    @property
    def sources(self) -> list[ArraySource]:
        return [ArraySource(self.frame.input)]

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        size = self.frame.rgb.shape[:2]
        if tuple(logits.shape[-2:]) == size:
            return logits
        return F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]


@dataclass
class ImageReader(BaseReader):
    """An image file, a folder searched recursively (hidden files skipped; the core drops anything inside the
    output folder), a glob pattern or a list of them; items keep their path relative to the input, so outputs keep
    its subfolders.
    ``workers`` decoding threads (default: the CPU count up to 16) decode ``ahead`` frames (default: ``workers``)
    beyond the one the network reads, in the order the items were checked."""

    workers: int | None = None
    ahead: int | None = None
    _prefetch: Prefetch | None = field(default=None, repr=False)  # this run's decoding ahead

    def find(self, input: Any, job: Job) -> list[Item]:
        self._prefetch = None  # a new run: nothing decoded ahead yet
        found = find_inputs(input, IMAGE_SUFFIXES, f"images ({', '.join(IMAGE_SUFFIXES)})")
        return [Item(rel.as_posix() if rel else path.name, path, rel or Path(path.name)) for path, rel in found]

    def check(self, item: Item, job: Job) -> None:
        _check_meta(job)
        image_size(item.source)  # DataError naming an unreadable file
        self._ahead().expect(item.source)

    def open(self, item: Item, job: Job) -> OpenedFrame:
        return OpenedFrame(self._ahead().get(item.source, lambda path: load_frame(path, job.model.meta)))

    def _ahead(self) -> Prefetch:
        if self._prefetch is None:
            workers = self.workers or cores(16)
            self._prefetch = Prefetch(workers, workers if self.ahead is None else self.ahead, "road-decode")
        return self._prefetch

    def from_array(self, array: np.ndarray, job: Job) -> OpenedFrame:
        """An in-memory RGB image ``(H, W, 3)`` or ``(3, H, W)``, uint8 or float in [0, 1] (``segsuite.core.api``),
        prepared as a file is (normalisation, ``train_scale``)."""
        _check_meta(job)
        return OpenedFrame(prepare_frame(rgb_pixels(array), job.model.meta))

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """Two synthetic street scenes (128 x 256, the synthetic training size) as PNG photos, written into ``folder``
        once (the demo page's examples)."""
        from PIL import Image

        from .synthetic import render_scene

        paths = []
        for seed in (11, 12):
            path = folder / f"street_{seed}.png"
            if not path.exists():
                Image.fromarray(render_scene((128, 256), seed)[0]).save(path)
            paths.append(path)
        return paths


def _check_meta(job: Job) -> None:
    missing = [k for k in META_KEYS if k not in job.model.meta]
    if missing:
        raise ConfigError(f"the checkpoint's data meta lacks {missing}: it was not trained on road-scene data")
