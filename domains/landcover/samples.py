"""Land-cover training and evaluation samples: scenes and regions, windowed reads of the rasters (never whole), and
the torch datasets over them.

Every item is ``{"image": float32 [C, H, W], "mask": int64 [H, W]}``: image normalised with the training
statistics (0 at nodata), mask holding class ids or ``ignore_index`` (nodata, outside the split, unlabelled).
When the data has instance rasters (``ROOT/instances/<stem>.tif``, one integer band, 0 = no instance) items also
carry ``"instances": int64 [H, W]``: the raster's ids, unique within the sample (not necessarily consecutive),
pixel-aligned with "mask" through every augmentation, and 0 wherever the mask is ``ignore_index``.
``meta["has_instances"]`` says which.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from segsuite.core.chunks import Chunk, ChunkSampler, aligned_step
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.regions import Rect, cells, grid_rects, repeat_factor_weights
from segsuite.core.unpacked import Unpacked, source_key
from segsuite.domains.landcover.classes import ClassMap
from segsuite.domains.landcover.io import as_window, open_raster, read_label_window, read_tile


@dataclass(frozen=True)
class Scene:
    """An image raster, its label raster and (optional) instance raster, all of the same file name."""

    stem: str
    image: Path
    label: Path
    instances: Path | None = None


@dataclass(frozen=True)
class Region:
    """The parts of one scene that belong to a split."""

    scene: Scene
    rects: tuple[Rect, ...]

def normalize(image: np.ndarray, valid: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(image - mean) / std`` per band for ``(C, h, w)``; pixels where ``valid`` ``(h, w)`` is False become 0.
    A band with std 0 is only centred."""
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    out = (image - m) / np.where(s > 0, s, 1.0).astype(np.float32)  # (C, h, w)
    out[:, ~valid] = 0.0
    return out.astype(np.float32, copy=False)


def class_targets(labels: np.ndarray, keep: np.ndarray, num_classes: int, ignore_index: int, where: str
                  ) -> np.ndarray:
    """``labels`` where ``keep``, else ``ignore_index``; kept values outside 0..K-1 are a DataError naming ``where``."""
    bad = np.unique(labels[keep & ((labels < 0) | (labels >= num_classes))])
    if bad.size:
        raise DataError(f"{where}: label values {bad.tolist()} are not class ids 0..{num_classes - 1} (nor the "
                        f"ignore index {ignore_index})")
    return np.where(keep, labels, ignore_index)


def augment_d4(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *extra: np.ndarray
               ) -> tuple[np.ndarray, ...]:
    """The same random flip and 90-degree rotation for image ``(C, H, W)``, mask ``(H, W)`` and any ``extra``
    arrays ``(..., H, W)`` (e.g. instances); non-square patches only rotate by 0 or 180 degrees so their shape is
    kept. Returns contiguous copies ``(image, mask, *extra)``; the random draws do not depend on ``extra``."""
    k = int(rng.integers(4)) if image.shape[-1] == image.shape[-2] else 2 * int(rng.integers(2))
    arrays = (image, mask, *extra)
    if rng.random() < 0.5:
        arrays = tuple(a[..., ::-1] for a in arrays)
    return tuple(np.ascontiguousarray(np.rot90(a, k, axes=(-2, -1))) for a in arrays)


def _in_rect(w: Rect, rect: Rect) -> np.ndarray:
    """Boolean ``(h, w)``: which pixels of ``w`` lie in ``rect``."""
    rows = (np.arange(w.row0, w.row1) >= rect.row0) & (np.arange(w.row0, w.row1) < rect.row1)
    cols = (np.arange(w.col0, w.col1) >= rect.col0) & (np.arange(w.col0, w.col1) < rect.col1)
    return rows[:, None] & cols[None, :]


def _sample(image: np.ndarray, mask: np.ndarray, instances: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """The sample contract: float32 image ``[C, H, W]``, int64 mask ``[H, W]`` and, if given, int64 instances
    ``[H, W]``."""
    sample = {"image": torch.from_numpy(image.astype(np.float32, copy=False)),
              "mask": torch.from_numpy(mask.astype(np.int64, copy=False))}
    if instances is not None:
        sample["instances"] = torch.from_numpy(instances.astype(np.int64, copy=False))
    return sample


class RasterCache:
    """Open rasterio datasets, least recently used closed first; fresh per process (DataLoader workers)."""

    def __init__(self, max_open: int = 32) -> None:
        self.max_open, self._open = max_open, (os.getpid(), OrderedDict())

    def get(self, path: Path) -> rasterio.DatasetReader:
        if self._open[0] != os.getpid():  # forked worker: never share GDAL handles with the parent
            self._open = os.getpid(), OrderedDict()
        handles = self._open[1]
        if path not in handles:
            handles[path] = open_raster(path, check_data=False)
            if len(handles) > self.max_open:
                handles.popitem(last=False)[1].close()
        handles.move_to_end(path)
        return handles[path]

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_open"])


class _LandCoverDataset(Dataset):
    """Shared reading: window -> normalised image and mask restricted to the owned pixels."""

    def __init__(self, regions: Sequence[Region], patch_size: tuple[int, int], bands: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], class_map: ClassMap, ignore_index: int = 255,
                 band_names: Sequence[str] | None = None, image_band_count: int | None = None,
                 alpha_is_mask: bool | None = None, plan: dict[str, Any] | None = None,
                 cache: str | None = None) -> None:
        if not regions:
            raise ConfigError("a dataset needs at least one scene region")
        self.regions = list(regions)
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.bands = [int(b) for b in bands]
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.class_map, self.ignore_index = class_map, int(ignore_index)
        self.band_names = list(band_names) if band_names else [f"band_{b}" for b in self.bands]
        self.image_band_count = image_band_count
        self.alpha_is_mask = alpha_is_mask
        self.plan = plan  # segsuite.core.plan's, reported in the meta with its batch size
        self._rasters, self.unpacked = RasterCache(), Unpacked(cache)  # cache: decoded pixels kept in this folder

    @property
    def meta(self) -> dict[str, Any]:
        """Plain-Python metadata for checkpoints and prediction."""
        return {"domain": "landcover", "in_channels": len(self.bands), "num_classes": len(self.class_map),
                **self.class_map.to_meta(), "ignore_index": self.ignore_index, "patch_size": list(self.patch_size),
                "bands": list(self.bands), "band_names": list(self.band_names),
                "image_band_count": self.image_band_count,  # bands of the training images (None if they differ)
                "alpha_is_mask": self.alpha_is_mask,  # the nodata rule prediction reads with (io.read_window)
                "normalization": {"mean": list(self.mean), "std": list(self.std), "nodata_value": 0.0},
                "has_instances": self.has_instances,
                **({} if self.plan is None else {"plan": self.plan, "batch_size": int(self.plan["batch_size"])})}

    @property
    def has_instances(self) -> bool:
        """Whether every scene has an instance raster (items then carry "instances")."""
        return all(region.scene.instances is not None for region in self.regions)

    def _load(self, scene: Scene, window: Window) -> list[np.ndarray]:
        """The files' pixels in ``window`` as stored (zero outside the raster): image ``(C, h, w)`` and its valid
        mask ``(h, w)``, labels and their valid mask ``(h, w)``, and the instance ids and theirs if the scene has
        an instance raster. Kept in (and read back from) the decoded-pixel cache if one is set."""
        if self.unpacked.folder is None:  # no cache: no key (three file stats a read)
            return self._read(scene, window)
        key = (*map(source_key, (scene.image, scene.label, scene.instances)), self.bands, self.alpha_is_mask,
               tuple(int(v) for v in (window.row_off, window.col_off, window.height, window.width)))
        return self.unpacked.get(key, lambda: self._read(scene, window))

    def _read(self, scene: Scene, window: Window) -> list[np.ndarray]:
        out = list(read_tile(self._rasters.get(scene.image), window, self.bands, self.alpha_is_mask))
        for path in (scene.label, scene.instances):
            if path is not None:
                data, ok = read_tile(self._rasters.get(path), window, [1])
                out += [data[0], ok]
        return out

    def _item(self, scene: Scene, arrays: list[np.ndarray], origin: tuple[int, int], box: Rect, own: Rect,
              region: Rect, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """The sample of ``box`` cut from ``arrays`` (:meth:`_load`'s, read at ``origin`` (row, col)): image
        normalised and zeroed outside ``region`` and at nodata, labels only inside ``own``, instances 0 where the
        mask is ignore; D4-augmented with ``rng`` if given. ``arrays`` are left as they are."""
        r, c = box.row0 - origin[0], box.col0 - origin[1]
        image, valid, labels, labelled, *ids = (a[..., r : r + box.height, c : c + box.width] for a in arrays)
        valid = valid & _in_rect(box, region)
        labels = labels.astype(np.int64)
        keep = valid & labelled & _in_rect(box, own) & (labels != self.ignore_index)
        mask = class_targets(labels, keep, len(self.class_map), self.ignore_index, f"{scene.label} {as_window(box)}")
        extra = [np.where(keep & ids[1] & (ids[0] > 0), ids[0], 0).astype(np.int64)] if ids else []
        out = normalize(image, valid, self.mean, self.std), mask, *extra
        return _sample(*(out if rng is None else augment_d4(*out[:2], rng, *out[2:])))


class LandCoverTrainDataset(_LandCoverDataset):
    """Random patch-sized windows inside the training rectangles; ``samples_per_epoch`` items per epoch.

    Windows come chunk by chunk (:class:`~segsuite.core.chunks.ChunkSampler`): a chunk of about ``chunk_size`` px
    aligned to the image file's blocks is read once and serves ``windows_per_chunk`` windows, mixed through a
    buffer of ``chunk_buffer`` chunks (memory per process: about ``chunk_buffer x (chunk_size + patch)^2`` pixels of
    all rasters). Windows are uniform over all placements, or (``rare_class_weighting``) drawn near cells picked by
    repeat-factor weights so windows with rare classes come up more often. The stream is seeded per process from
    ``seed`` and torch's RNG, so it differs between DataLoader workers and follows ``seed_everything``.
    """

    def __init__(self, regions: Sequence[Region], *args: Any, samples_per_epoch: int = 1000, augment: bool = True,
                 rare_class_weighting: bool = False, seed: int = 0, max_index_cells: int = 4096, chunk_size: int = 1024,
                 windows_per_chunk: int = 32, chunk_buffer: int = 4, **kwargs: Any) -> None:
        super().__init__(regions, *args, **kwargs)
        if min(samples_per_epoch, chunk_size, windows_per_chunk, chunk_buffer) < 1:
            raise ConfigError(f"samples_per_epoch, chunk_size, windows_per_chunk and chunk_buffer must be >= 1; got "
                              f"{samples_per_epoch}, {chunk_size}, {windows_per_chunk}, {chunk_buffer}")
        self.samples_per_epoch, self.augment, self.seed = int(samples_per_epoch), augment, int(seed)
        self.chunking = int(chunk_size), int(windows_per_chunk), int(chunk_buffer)
        self._rects = [(region.scene, rect) for region in self.regions for rect in region.rects]
        self.rare_class_weighting, self.max_index_cells = bool(rare_class_weighting), int(max_index_cells)
        self._sampler: ChunkSampler | None = None  # built on the first draw

    def _rare_class_index(self, max_cells: int) -> tuple[list[tuple[int, Rect]], np.ndarray]:
        """Patch-sized cells (a seeded subset of at most ``max_cells``) with repeat-factor weights from the classes
        present in each cell. Built with the sampler, on the first draw (it reads every cell's labels): evaluate and
        predict, which never draw a training window, never build it; each DataLoader worker builds its own."""
        all_cells = [(i, c) for i, (_, rect) in enumerate(self._rects) for c in cells(rect, self.patch_size)]
        if len(all_cells) > max_cells:
            pick = np.random.default_rng(self.seed).choice(len(all_cells), max_cells, replace=False)
            all_cells = [all_cells[j] for j in sorted(pick)]
        presence = np.zeros((len(all_cells), len(self.class_map)), bool)
        for row, (i, cell) in enumerate(all_cells):
            labels, labelled = read_label_window(self._rasters.get(self._rects[i][0].label), as_window(cell))
            ids = np.unique(labels[labelled])
            presence[row, ids[(ids >= 0) & (ids < len(self.class_map))]] = True
        return all_cells, repeat_factor_weights(presence)

    def sampler(self) -> ChunkSampler:
        """The chunk sampler over the training rectangles (built on the first draw, with the index if weighting)."""
        if self._sampler is None:
            size, per_chunk, buffer = self.chunking
            steps = [tuple(aligned_step(b, size) for b in self._rasters.get(s.image).block_shapes[0])
                     for s, _ in self._rects]
            points, weights = None, None
            if self.rare_class_weighting:
                cells_, weights = self._rare_class_index(self.max_index_cells)
                points = [(i, cell.row0, cell.col0) for i, cell in cells_]
            self._sampler = ChunkSampler([r for _, r in self._rects], self.patch_size, steps, per_chunk,
                                         buffer, points, weights, self.seed)
        return self._sampler

    def _read_chunk(self, chunk: Chunk) -> list[np.ndarray]:
        return self._load(self._rects[chunk.item][0], as_window(chunk.area(self.patch_size)))

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        chunk, arrays, box = self.sampler().draw(self._read_chunk)
        scene, rect = self._rects[chunk.item]
        area = chunk.area(self.patch_size)
        return self._item(scene, arrays, (area.row0, area.col0), box, rect, rect,
                          self.sampler().rng if self.augment else None)


class LandCoverGridDataset(_LandCoverDataset):
    """Regular grid of patch-sized windows covering every pixel of the regions once (validation/test)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.items = [(region.scene, box, own, rect) for region in self.regions for rect in region.rects
                      for box, own in grid_rects(rect, self.patch_size)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, box, own, rect = self.items[index]
        return self._item(scene, self._load(scene, as_window(box)), (box.row0, box.col0), box, own, rect)
