"""Land-cover datasets over ``ROOT/images/*.tif`` + ``ROOT/labels/*.tif`` (+ ``ROOT/instances/*.tif``) and the
``build_datasets`` builder.

Every item is ``{"image": float32 [C, H, W], "mask": int64 [H, W]}``: image normalised with the training
statistics (0 at nodata), mask holding class ids or ``ignore_index`` (nodata, outside the split, unlabelled).
When the data has instance rasters (``ROOT/instances/<stem>.tif``, one integer band, 0 = no instance) items also
carry ``"instances": int64 [H, W]``: the raster's ids, unique within the sample (not necessarily consecutive),
pixel-aligned with "mask" through every augmentation, and 0 wherever the mask is ``ignore_index``.
``meta["has_instances"]`` says which.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from segsuite.core import folds
from segsuite.core import plan as planning
from segsuite.core.errors import ConfigError, DataError
from segsuite.domains.landcover.classes import ClassMap, find_class_map
from segsuite.domains.landcover.io import (
    band_stats,
    check_pair,
    count_values,
    open_raster,
    read_label_window,
    read_window,
)
from segsuite.domains.landcover.sampling import (
    Rect,
    cells,
    full_rect,
    grid_windows,
    holdout_split,
    placement_weights,
    random_window,
    repeat_factor_weights,
    window_near,
    window_rect,
)
from segsuite.domains.landcover.synthetic import make_dataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff")


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


def find_scenes(root: str | Path) -> list[Scene]:
    """Scenes under ``root/images`` with labels of the same name in ``root/labels``, sorted by stem; when
    ``root/instances`` exists, every scene needs an instance raster of the same name there."""
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(f"missing folder {folder}: expected ROOT/images/*.tif and ROOT/labels/*.tif")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DataError(f"no GeoTIFF images (*.tif, *.tiff) in {images_dir}")
    missing = [p.name for p in images if not (labels_dir / p.name).is_file()]
    if missing:
        raise DataError(f"{labels_dir}: no label raster for image(s) {', '.join(missing[:10])} (same file name needed)")
    instances_dir = root / "instances"
    if not instances_dir.is_dir():
        return [Scene(p.stem, p, labels_dir / p.name) for p in images]
    missing = [p.name for p in images if not (instances_dir / p.name).is_file()]
    if missing:
        raise DataError(f"{instances_dir}: no instance raster for image(s) {', '.join(missing[:10])} (same file name "
                        "needed; remove the folder to train without instance labels)")
    return [Scene(p.stem, p, labels_dir / p.name, instances_dir / p.name) for p in images]


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


def _in_rect(window: Window, rect: Rect) -> np.ndarray:
    """Boolean ``(h, w)``: which pixels of ``window`` lie in ``rect``."""
    w = window_rect(window)
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
        self.max_open = max_open
        self._pid = os.getpid()
        self._open: OrderedDict[Path, rasterio.DatasetReader] = OrderedDict()

    def get(self, path: Path) -> rasterio.DatasetReader:
        if os.getpid() != self._pid:  # forked worker: never share GDAL handles with the parent
            self._pid, self._open = os.getpid(), OrderedDict()
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        src = open_raster(path, check_data=False)
        self._open[path] = src
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return src

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_open"])


class _LandCoverDataset(Dataset):
    """Shared reading: window -> normalised image and mask restricted to the owned pixels."""

    def __init__(self, regions: Sequence[Region], patch_size: tuple[int, int], bands: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], class_map: ClassMap, ignore_index: int = 255,
                 band_names: Sequence[str] | None = None, image_band_count: int | None = None,
                 alpha_is_mask: bool | None = None, plan: dict[str, Any] | None = None) -> None:
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
        self._rasters = RasterCache()

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

    def _read(self, scene: Scene, window: Window, own: Rect, region: Rect
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Normalised image ``(C, h, w)`` zeroed outside ``region`` and at nodata, int64 mask ``(h, w)`` with
        labels only inside ``own``, and int64 instances ``(h, w)`` (0 where the mask is ignore; None if the scene
        has no instance raster)."""
        image, valid = read_window(self._rasters.get(scene.image), window, self.bands, self.alpha_is_mask)
        labels, labelled = read_label_window(self._rasters.get(scene.label), window)  # (h, w)
        valid &= _in_rect(window, region)
        keep = valid & labelled & _in_rect(window, own) & (labels != self.ignore_index)
        mask = class_targets(labels, keep, len(self.class_map), self.ignore_index, f"{scene.label} {window}")
        instances = None
        if scene.instances is not None:
            ids, labelled = read_label_window(self._rasters.get(scene.instances), window)  # (h, w)
            instances = np.where(keep & labelled & (ids > 0), ids, 0)
        return normalize(image, valid, self.mean, self.std), mask, instances


class LandCoverTrainDataset(_LandCoverDataset):
    """Random patch-sized windows inside the training rectangles; ``samples_per_epoch`` items per epoch.

    Windows are uniform over all placements, or (``rare_class_weighting``) drawn near cells picked by
    repeat-factor weights so windows with rare classes come up more often. Randomness is drawn from torch's
    RNG per item, so it differs between epochs and DataLoader workers and follows ``seed_everything``.
    """

    def __init__(self, regions: Sequence[Region], *args: Any, samples_per_epoch: int = 1000, augment: bool = True,
                 rare_class_weighting: bool = False, seed: int = 0, max_index_cells: int = 4096, **kwargs: Any) -> None:
        super().__init__(regions, *args, **kwargs)
        if samples_per_epoch < 1:
            raise ConfigError(f"samples_per_epoch must be >= 1; got {samples_per_epoch}")
        self.samples_per_epoch, self.augment, self.seed = int(samples_per_epoch), augment, int(seed)
        self._rects = [(region.scene, rect) for region in self.regions for rect in region.rects]
        self._rect_p = placement_weights([r for _, r in self._rects], self.patch_size)
        self._cells: list[tuple[int, Rect]] = []
        self._cell_p: np.ndarray | None = None
        if rare_class_weighting:
            self._cells, self._cell_p = self._rare_class_index(max_index_cells)

    def _rare_class_index(self, max_cells: int) -> tuple[list[tuple[int, Rect]], np.ndarray]:
        """Patch-sized cells (a seeded subset of at most ``max_cells``) with repeat-factor weights from the
        classes present in each cell."""
        all_cells = [(i, c) for i, (_, rect) in enumerate(self._rects) for c in cells(rect, self.patch_size)]
        if len(all_cells) > max_cells:
            pick = np.random.default_rng(self.seed).choice(len(all_cells), max_cells, replace=False)
            all_cells = [all_cells[j] for j in sorted(pick)]
        presence = np.zeros((len(all_cells), len(self.class_map)), bool)
        for row, (i, cell) in enumerate(all_cells):
            labels, labelled = read_label_window(self._rasters.get(self._rects[i][0].label), cell.window())
            ids = np.unique(labels[labelled])
            presence[row, ids[(ids >= 0) & (ids < len(self.class_map))]] = True
        return all_cells, repeat_factor_weights(presence)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index), int(torch.randint(0, 2**31 - 1, ()))])
        if self._cell_p is not None:
            i, cell = self._cells[int(rng.choice(len(self._cells), p=self._cell_p))]
            scene, rect = self._rects[i]
            window = window_near(cell, rect, self.patch_size, rng)
        else:
            scene, rect = self._rects[int(rng.choice(len(self._rects), p=self._rect_p))]
            window = random_window(rect, self.patch_size, rng)
        image, mask, instances = self._read(scene, window, own=rect, region=rect)
        if self.augment:
            image, mask, *extra = augment_d4(image, mask, rng, *([] if instances is None else [instances]))
            instances = extra[0] if extra else None
        return _sample(image, mask, instances)


class LandCoverGridDataset(_LandCoverDataset):
    """Regular grid of patch-sized windows covering every pixel of the regions once (validation/test)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.items = [(region.scene, window, own, rect) for region in self.regions for rect in region.rects
                      for window, own in grid_windows(rect, self.patch_size)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, window, own, rect = self.items[index]
        return _sample(*self._read(scene, window, own=own, region=rect))


def _patch(patch_size: int | Sequence[int]) -> tuple[int, int]:
    size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(int(v) for v in patch_size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"patch_size must be an int or [height, width] of positive ints; got {patch_size!r}")
    return size  # type: ignore[return-value]


def _stems(value: str | Sequence[str] | None, name: str, known: Sequence[str]) -> list[str]:
    stems = [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]
    unknown = [s for s in stems if s not in known]
    if unknown:
        raise ConfigError(f"{name}: unknown scene stem(s) {unknown}; available: {list(known)[:20]}")
    return stems


@dataclass(frozen=True)
class _SceneInfo:
    height: int
    width: int
    count: int
    descriptions: tuple[str | None, ...]
    resolution: float | None = None
    class_pixels: tuple[tuple[int, int], ...] = ()  # (value, labelled pixels) of the label raster


def _inspect(scene: Scene, class_map: ClassMap, ignore_index: int, check_labels: bool) -> _SceneInfo:
    """Check one image/label pair (geometry, readability, label values) and the instance raster's geometry, and
    return the image's layout, pixel size and (``check_labels``: the label raster is read once) pixels per value."""
    check_pair(scene.image, scene.label)
    if scene.instances is not None:
        try:
            check_pair(scene.image, scene.instances)
        except DataError as exc:
            raise DataError(f"instance raster {scene.instances} (1 integer band of ids, 0 = none): {exc}") from exc
    counts: dict[int, int] = {}
    if check_labels:
        with open_raster(scene.label, check_data=False) as src:
            counts, _ = count_values(src)
        bad = sorted(set(counts) - set(class_map.ids) - {ignore_index})
        if bad:
            shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
            raise DataError(f"{scene.label}: label values {shown} are not in the class map ({class_map.source}: ids "
                            f"0..{len(class_map) - 1}); other accepted values: nodata and the ignore index "
                            f"{ignore_index}")
    with open_raster(scene.image, check_data=False) as src:
        resolution = float(abs(src.res[0])) if src.crs is not None else None
        return _SceneInfo(src.height, src.width, src.count, tuple(src.descriptions), resolution,
                          tuple(sorted(counts.items())))


def _band_setup(scenes: Sequence[Scene], infos: dict[str, _SceneInfo], bands: Sequence[int] | None
                ) -> tuple[list[int], list[str]]:
    """Bands to read (1-based; all when None, then every image must have the same count) and their names."""
    first = infos[scenes[0].stem]
    chosen = list(range(1, first.count + 1)) if bands is None else [int(b) for b in bands]
    for scene in scenes:
        count = infos[scene.stem].count
        if bands is None and count != first.count:
            raise DataError(f"{scene.image} has {count} bands but {scenes[0].image} has {first.count}; "
                            f"select common bands with bands=[...] (1-based)")
        bad = [b for b in chosen if not 1 <= b <= count]
        if bad or not chosen:
            raise DataError(f"{scene.image}: bands {bad or chosen} not available; it has bands 1..{count} (1-based)")
    return chosen, [first.descriptions[b - 1] or f"band_{b}" for b in chosen]


def _split(scenes: Sequence[Scene], infos: dict[str, _SceneInfo], val: list[str], test: list[str],
           holdout_fraction: float, holdout_mode: str, holdout_block: int, seed: int) -> dict[str, list[Region]]:
    """Regions per split: whole scenes by stem, plus a spatial hold-out of every training scene."""
    if set(val) & set(test):
        raise ConfigError(f"scenes in both val_stems and test_stems: {sorted(set(val) & set(test))}")
    out: dict[str, list[Region]] = {"train": [], "val": [], "test": []}
    for scene in scenes:
        whole = full_rect(infos[scene.stem].height, infos[scene.stem].width)
        if scene.stem in val or scene.stem in test:
            out["val" if scene.stem in val else "test"].append(Region(scene, (whole,)))
        elif holdout_fraction > 0:
            train, held = holdout_split(whole.height, whole.width, holdout_fraction, holdout_mode, holdout_block, seed)
            out["train"].append(Region(scene, tuple(train)))
            out["val"].append(Region(scene, tuple(held)))
        else:
            out["train"].append(Region(scene, (whole,)))
    if not out["train"]:
        raise ConfigError("no training scenes left: every scene is in val_stems or test_stems")
    if not out["val"]:
        raise ConfigError("no validation data: give val_stems (scene file stems) or holdout_fraction in (0, 1)")
    return out


def _fold_split(scenes: Sequence[Scene], infos: dict[str, _SceneInfo], test: list[str], block: int
                ) -> dict[str, list[Region]] | None:
    """The requested k-fold (``fold=K``, :mod:`segsuite.core.folds`): whole scenes when there are at least as many
    as folds, else square blocks of ``block`` px (``stem:row,col``) so a fold's validation never shares pixels with
    its training; None when no fold was asked for."""
    request, pool = folds.active(), [s for s in scenes if s.stem not in test]
    if request is None:
        return None
    whole = {s.stem: full_rect(infos[s.stem].height, infos[s.stem].width) for s in pool}
    if len(pool) >= request.folds:
        items = {s.stem: (s, whole[s.stem]) for s in pool}
    else:
        items = {f"{s.stem}:{r.row0},{r.col0}": (s, r) for s in pool
                 for r in _blocks(whole[s.stem].height, whole[s.stem].width, block)}
    chosen = folds.assign(list(items))
    out: dict[str, list[Region]] = {"train": [], "val": [],
                                    "test": [Region(s, (full_rect(infos[s.stem].height, infos[s.stem].width),))
                                             for s in scenes if s.stem in test]}
    for split, names in zip(("train", "val"), chosen, strict=True):
        for scene in pool:
            rects = tuple(items[n][1] for n in names if items[n][0] is scene)
            if rects:
                out[split].append(Region(scene, rects))
    return out


def _blocks(height: int, width: int, block: int) -> list[Rect]:
    """Square-ish blocks of about ``block`` px tiling a scene (edges spread evenly, as the hold-out's)."""
    rows = [int(v) for v in np.linspace(0, height, max(1, round(height / block)) + 1)]
    cols = [int(v) for v in np.linspace(0, width, max(1, round(width / block)) + 1)]
    return [Rect(r0, c0, r1, c1) for r0, r1 in zip(rows, rows[1:]) for c0, c1 in zip(cols, cols[1:])]


def _check_alpha_option(alpha_is_mask: Any) -> bool | None:
    if alpha_is_mask is not None and not isinstance(alpha_is_mask, bool):
        raise ConfigError(f"alpha_is_mask={alpha_is_mask!r}: accepted true, false or null (alpha is a mask only when "
                          f"the alpha band is not read)")
    return alpha_is_mask


def epoch_samples(regions: Sequence[Region], patch: tuple[int, int], batch_size: int) -> int:
    """Windows per epoch for about one pass over the training area: its pixels / patch pixels, at least a batch."""
    pixels = sum(rect.area for region in regions for rect in region.rects)
    return max(pixels // (patch[0] * patch[1]), int(batch_size), 1)


def _fingerprint(scenes: Sequence[Scene], infos: dict[str, _SceneInfo], train_regions: Sequence[Region],
                 class_map: ClassMap, stats: dict[str, Any]) -> planning.Fingerprint:
    """The training scenes as the core planner sees them (class pixels over whole training scenes)."""
    pixels = np.zeros(len(class_map), np.int64)
    for scene in scenes:
        for value, n in infos[scene.stem].class_pixels:
            if 0 <= value < len(class_map):
                pixels[value] += n
    resolutions = [infos[s.stem].resolution for s in scenes if infos[s.stem].resolution]
    return planning.Fingerprint(
        sizes=[[infos[s.stem].height, infos[s.stem].width] for s in scenes], class_names=list(class_map.names),
        class_pixels=pixels.tolist(), channel_mean=list(stats["mean"]), channel_std=list(stats["std"]),
        resolution=float(np.median(resolutions)) if resolutions else None,
        train_pixels=int(sum(rect.area for region in train_regions for rect in region.rects)))


def build_datasets(root: str, patch_size: int | Sequence[int] | None = 256, bands: Sequence[int] | None = None,
                   alpha_is_mask: bool | None = None, val_stems: Sequence[str] | None = None,
                   test_stems: Sequence[str] | None = None, holdout_fraction: float | None = 0.0,
                   holdout_mode: str = "strip", holdout_block: int | None = None,
                   samples_per_epoch: int | None = None, batch_size: int | None = None,
                   rare_class_weighting: bool | None = False, augment: bool = True, ignore_index: int = 255,
                   seed: int = 0, stats_max_pixels: int = 4_000_000, check_labels: bool = True,
                   synthetic_if_missing: bool = False, synthetic_scenes: int = 2, synthetic_size: int = 512,
                   memory_gb: float = 8.0) -> dict[str, Dataset]:
    """Build ``{"train", "val"[, "test"]}`` land-cover datasets from ``root``.

    Layout: ``root/images/<stem>.tif`` (multi-band), ``root/labels/<stem>.tif`` (1 band of class ids), optional
    ``root/classes.json`` or ``classes.csv``, optional ``root/instances/<stem>.tif`` (1 integer band of instance
    ids, 0 = none, same geometry; then for every scene, and items carry "instances"). ``val_stems``/``test_stems``
    move whole scenes to those splits; ``holdout_fraction`` > 0 also holds out a ``holdout_mode`` ("strip" or
    "blocks" of ``holdout_block`` px) part of every training scene for validation.

    The training scenes are planned first (:mod:`segsuite.core.plan`, logged, kept in the training set's
    ``meta["plan"]``); options left None take the plan's value: ``holdout_fraction`` and ``holdout_block`` (from the
    scene sizes), ``patch_size`` (from the training regions left), ``batch_size`` (budgeted for ``memory_gb``),
    ``rare_class_weighting`` (when the rarest class holds under 5 % of the labelled pixels).
    ``bands`` are 1-based (default all); ``alpha_is_mask`` says whether a band GDAL flags as alpha marks nodata
    (None: only when it is not read, see ``io.alpha_is_nodata``). ``samples_per_epoch`` random training windows make
    an epoch (None: about one pass over the training area, at least a batch). Band statistics come from the
    training part only (``stats_max_pixels`` bounds the pixels read). ``check_labels`` scans every label raster once
    for values outside the class map (and counts the class pixels the plan reports).
    A missing ``root`` is filled with ``synthetic_scenes`` synthetic scenes of ``synthetic_size`` px only if
    ``synthetic_if_missing``.
    """
    root_path = Path(root)
    if not root_path.exists():
        if not synthetic_if_missing:
            raise DataError(f"data root not found: {root_path} (set synthetic_if_missing=true to generate a demo)")
        make_dataset(root_path, n_scenes=synthetic_scenes, size=synthetic_size, seed=seed)
    given_patch = None if patch_size is None else _patch(patch_size)
    alpha_is_mask = _check_alpha_option(alpha_is_mask)
    scenes = find_scenes(root_path)
    class_map = find_class_map(root_path)
    stems = [s.stem for s in scenes]
    val, test = _stems(val_stems, "val_stems", stems), _stems(test_stems, "test_stems", stems)
    with ThreadPoolExecutor(max_workers=min(8, len(scenes))) as pool:  # GDAL reads release the GIL
        found = pool.map(lambda s: _inspect(s, class_map, ignore_index, check_labels), scenes)
        infos = dict(zip(stems, found, strict=True))
    band_list, band_names = _band_setup(scenes, infos, bands)
    training = [s for s in scenes if s.stem not in val and s.stem not in test]
    hold = planning.holdout([[infos[s.stem].height, infos[s.stem].width] for s in training] or [[1, 1]])
    fraction = hold["fraction"] if holdout_fraction is None else float(holdout_fraction)
    block = int(holdout_block) if holdout_block else max(hold["block"], *(given_patch or (0,)))
    if given_patch is not None and block < max(given_patch):
        raise ConfigError(f"holdout_block ({block}) must be at least the patch size {list(given_patch)}")
    splits = (None if val else _fold_split(scenes, infos, test, block)) or _split(
        scenes, infos, val, test, fraction, holdout_mode, block, seed)
    patch = given_patch or tuple(planning.patch_2d(
        [[r.height, r.width] for region in splits["train"] for r in region.rects],
        [[infos[s.stem].height, infos[s.stem].width] for s in training]))
    stat_cells = [(region.scene.image, cell.window()) for region in splits["train"] for rect in region.rects
                  for cell in cells(rect, (512, 512))]
    stats = band_stats(stat_cells, band_list, max_pixels=stats_max_pixels, seed=seed, alpha_is_mask=alpha_is_mask)
    holdout = {"mode": holdout_mode, "block": block, "fraction": fraction} if fraction > 0 else None
    plan = planning.make_plan(_fingerprint(training, infos, splits["train"], class_map, stats), patch, memory_gb,
                              batch=batch_size, holdout=holdout)
    log.info("%s", planning.summary(plan))
    counts = {info.count for info in infos.values()}
    common = dict(patch_size=patch, bands=band_list, mean=stats["mean"], std=stats["std"], class_map=class_map,
                  ignore_index=ignore_index, band_names=band_names,
                  image_band_count=counts.pop() if len(counts) == 1 else None, alpha_is_mask=alpha_is_mask, plan=plan)
    if samples_per_epoch is None:
        samples_per_epoch = epoch_samples(splits["train"], patch, plan["batch_size"])
    train = LandCoverTrainDataset(splits["train"], samples_per_epoch=samples_per_epoch, augment=augment,
                                  rare_class_weighting=plan["rare_class_sampling"] if rare_class_weighting is None
                                  else rare_class_weighting, seed=seed, **common)
    held = {split: LandCoverGridDataset(splits[split], **common) for split in ("val", "test") if splits[split]}
    return {"train": train, **held}
