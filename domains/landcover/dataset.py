"""The land-cover ``build_datasets`` builder over ``ROOT/images/*.tif`` + ``ROOT/labels/*.tif`` (+
``ROOT/instances/*.tif``): scenes found and checked, split, planned; the datasets themselves are in
:mod:`segsuite.domains.landcover.samples`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from segsuite.core import folds
from segsuite.core import plan as planning
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.files import generated_root
from segsuite.core.regions import blocks, cells, full_rect, holdout_split
from segsuite.domains.landcover.classes import ClassMap, find_class_map
from segsuite.domains.landcover.io import as_window, open_raster
from segsuite.domains.landcover.rasterstats import band_stats, check_pair, count_values
from segsuite.domains.landcover.samples import (
    LandCoverGridDataset,
    LandCoverTrainDataset,
    Region,
    Scene,
    class_targets,  # noqa: F401 (re-exported: its old home)
)
from segsuite.domains.landcover.synthetic import make_dataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".vrt")  # a VRT: a mosaic of scenes, read window by window as a GeoTIFF


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
        raise DataError(f"no GeoTIFF images (*.tif, *.tiff, or *.vrt mosaics) in {images_dir}")

    def partners(folder: Path, what: str, hint: str = "") -> list[Path]:
        missing = [p.name for p in images if not (folder / p.name).is_file()]
        if missing:
            raise DataError(f"{folder}: no {what} raster for image(s) {', '.join(missing[:10])} (same file name "
                            f"needed{hint})")
        return [folder / p.name for p in images]

    labels, instances = partners(labels_dir, "label"), root / "instances"
    extra = partners(instances, "instance", "; remove the folder to train without instance labels") \
        if instances.is_dir() else [None] * len(images)
    return [Scene(p.stem, p, label, ids) for p, label, ids in zip(images, labels, extra)]


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
                 for row in blocks(whole[s.stem].height, whole[s.stem].width, block) for r in row}
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


def epoch_samples(regions: Sequence[Region], patch: tuple[int, int], batch_size: int) -> int:
    """Windows per epoch for about one pass over the training area: its pixels / patch pixels, at least a batch."""
    pixels = sum(rect.area for region in regions for rect in region.rects)
    return max(pixels // (patch[0] * patch[1]), int(batch_size), 1)


def _fingerprint(scenes: Sequence[Scene], infos: dict[str, _SceneInfo], train_regions: Sequence[Region],
                 class_map: ClassMap, stats: dict[str, Any]) -> planning.Fingerprint:
    """The training scenes as the core planner sees them (class pixels over whole training scenes)."""
    pixels = np.zeros(len(class_map), np.int64)
    for value, n in (pair for s in scenes for pair in infos[s.stem].class_pixels if 0 <= pair[0] < len(class_map)):
        pixels[value] += n
    resolutions = [infos[s.stem].resolution for s in scenes if infos[s.stem].resolution]
    return planning.Fingerprint(
        sizes=[[infos[s.stem].height, infos[s.stem].width] for s in scenes], class_names=list(class_map.names),
        class_pixels=pixels.tolist(), channel_mean=list(stats["mean"]), channel_std=list(stats["std"]),
        resolution=float(np.median(resolutions)) if resolutions else None,
        train_pixels=int(sum(rect.area for region in train_regions for rect in region.rects)))


def _chunking(chunks: dict[str, int] | None) -> dict[str, int]:
    keys = {"size": "chunk_size", "windows": "windows_per_chunk", "buffer": "chunk_buffer"}
    unknown = sorted(set(chunks or {}) - set(keys))
    if unknown:
        raise ConfigError(f"datasets.chunks has unknown keys {unknown}; accepted: {', '.join(keys)}")
    return {keys[k]: int(v) for k, v in (chunks or {}).items()}


def build_datasets(root: str, patch_size: int | Sequence[int] | None = 256, bands: Sequence[int] | None = None,
                   alpha_is_mask: bool | None = None, val_stems: Sequence[str] | None = None,
                   test_stems: Sequence[str] | None = None, holdout_fraction: float | None = 0.0,
                   holdout_mode: str = "strip", holdout_block: int | None = None,
                   samples_per_epoch: int | None = None, batch_size: int | None = None,
                   rare_class_weighting: bool | None = False, augment: bool = True, ignore_index: int = 255,
                   seed: int = 0, stats_max_pixels: int = 4_000_000, check_labels: bool = True,
                   synthetic_if_missing: bool = False, synthetic_scenes: int = 2, synthetic_size: int = 512,
                   memory_gb: float = 8.0, chunks: dict[str, int] | None = None, cache: str | None = None
                   ) -> dict[str, Dataset]:
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
    ``synthetic_if_missing``. ``chunks`` (``size``, ``windows``, ``buffer``) sets how training windows are read
    (:class:`~segsuite.domains.landcover.samples.LandCoverTrainDataset`). ``cache``: a folder keeping the decoded
    pixels of every area read (:class:`segsuite.core.unpacked.Unpacked`), so later epochs and runs skip decoding.
    """
    chunking = _chunking(chunks)
    generate = functools.partial(make_dataset, n_scenes=synthetic_scenes, size=synthetic_size, seed=seed)
    root_path = generated_root(root, generate if synthetic_if_missing else None,
                               "set synthetic_if_missing=true to generate a demo")
    given_patch = None if patch_size is None else _patch(patch_size)
    if alpha_is_mask is not None and not isinstance(alpha_is_mask, bool):
        raise ConfigError(f"alpha_is_mask={alpha_is_mask!r}: accepted true, false or null (alpha is a mask only when "
                          f"the alpha band is not read)")
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
    stat_cells = [(region.scene.image, as_window(cell)) for region in splits["train"] for rect in region.rects
                  for cell in cells(rect, (512, 512))]
    stats = band_stats(stat_cells, band_list, max_pixels=stats_max_pixels, seed=seed, alpha_is_mask=alpha_is_mask)
    holdout = {"mode": holdout_mode, "block": block, "fraction": fraction} if fraction > 0 else None
    plan = planning.make_plan(_fingerprint(training, infos, splits["train"], class_map, stats), patch, memory_gb,
                              batch=batch_size, holdout=holdout)
    log.info("%s", planning.summary(plan))
    counts = {info.count for info in infos.values()}
    common = dict(patch_size=patch, bands=band_list, mean=stats["mean"], std=stats["std"], class_map=class_map,
                  ignore_index=ignore_index, band_names=band_names,
                  image_band_count=counts.pop() if len(counts) == 1 else None, alpha_is_mask=alpha_is_mask, plan=plan,
                  cache=cache)
    if samples_per_epoch is None:
        samples_per_epoch = epoch_samples(splits["train"], patch, plan["batch_size"])
    train = LandCoverTrainDataset(splits["train"], samples_per_epoch=samples_per_epoch, augment=augment,
                                  rare_class_weighting=plan["rare_class_sampling"] if rare_class_weighting is None
                                  else rare_class_weighting, seed=seed, **chunking, **common)
    held = {split: LandCoverGridDataset(splits[split], **common) for split in ("val", "test") if splits[split]}
    return {"train": train, **held}
