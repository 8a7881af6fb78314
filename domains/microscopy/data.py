"""Microscopy data: TIFFs (2D, 3D stacks, channels, pixel size), percentile normalisation, image/mask pairing,
synthetic nuclei, training windows. Images ``(C, Z, H, W)`` (``Z = 1`` for 2D), labels ``(Z, H, W)`` (0 = none)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from segsuite.core import folds, plan3d
from segsuite.core import plan as planning
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.files import files_in, generated_root, pair_by_stem
from segsuite.core.sampling import ClassLocations, crop_window, window_starts

log = logging.getLogger(__name__)

CLASS_NAMES = ["background", "nucleus"]
SUFFIXES = (".tif", ".tiff")
PERCENTILES = (1.0, 99.8)  # CSBDeep / StarDist's normalisation
MAX_PATCH = 128  # nuclei are 5-40 px across: a 128 px window holds dozens of them, with context


def read_tiff(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """A TIFF as ``(C, Z, H, W)`` (its dtype) and the pixel size in µm (None when the tags do not say)."""
    try:
        with tifffile.TiffFile(path) as tif:
            data, axes, pixel = tif.series[0].asarray(), tif.series[0].axes, _pixel_size(tif)
    except Exception as err:  # tifffile raises many kinds for a damaged file
        raise DataError(f"cannot read {path} as a TIFF: {err}") from None
    return to_czyx(data, axes, path), pixel


def to_czyx(data: np.ndarray, axes: str, name: Any = "the array") -> np.ndarray:
    """``data`` with tifffile ``axes`` (``YX``, ``ZCYX``, ``YXS``...) as ``(C, Z, H, W)``; ``Q``, ``I``... are Z."""
    axes = axes.replace("S", "C")
    for i in reversed(range(len(axes))):  # drop singleton axes we do not use
        if axes[i] not in "CZYX" and data.shape[i] == 1:
            data, axes = data.squeeze(i), axes[:i] + axes[i + 1:]
    other = [a for a in axes if a not in "CZYX"]
    if len(other) > 1 or (other and "Z" in axes) or axes.replace("C", "")[-2:] != "YX" or len(set(axes)) != len(axes):
        raise DataError(f"{name} has axes {axes!r} {tuple(data.shape)}; expected (Y, X), (Z, Y, X) or with channels")
    axes = axes.replace(other[0], "Z") if other else axes
    missing = "".join(a for a in "CZ" if a not in axes)
    data, axes = data.reshape((1,) * len(missing) + data.shape), missing + axes
    return np.transpose(data, [axes.index(a) for a in "CZYX"])


def _pixel_size(tif: tifffile.TiffFile) -> float | None:
    """µm per pixel from ``XResolution``: in ImageJ's unit when it is microns, or in centimetres."""
    tags = tif.pages[0].tags
    if (tag := tags.get("XResolution")) is None or not tag.value[0] or not tag.value[1]:
        return None
    if str((tif.imagej_metadata or {}).get("unit", "")).lower() in ("micron", "um", "µm", "\\u00b5m"):
        return tag.value[1] / tag.value[0]
    return 1e4 * tag.value[1] / tag.value[0] if int(getattr(tags.get("ResolutionUnit"), "value", 0)) == 3 else None


def normalize(image: np.ndarray) -> np.ndarray:
    """Per channel, ``(x - p1) / (p99.8 - p1)`` over the whole image ``(C, ...)``, float32."""
    lo, hi = np.percentile(image.astype(np.float32), PERCENTILES, axis=tuple(range(1, image.ndim)), keepdims=True)
    return ((image - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def find_pairs(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs under ``root``: ``images/`` + ``masks/`` by file stem, or the CTC layout
    (``01/t000.tif`` with ``01_GT/SEG/man_seg000.tif``, else the silver truth ``01_ST/SEG/man_seg000.tif``; frames
    with neither are unlabelled; 3D slice annotations ``man_seg_000_zzz.tif`` are not used)."""
    root = Path(root)
    if (root / "images").is_dir():
        return pair_by_stem(root / "images", root / "masks", SUFFIXES, SUFFIXES)
    pairs = []
    for seq in sorted(d for d in root.iterdir() if d.is_dir() and d.name.isdigit()):
        for image in files_in(seq, SUFFIXES, "t*"):
            masks = [root / f"{seq.name}_{k}" / "SEG" / f"man_seg{image.stem[1:]}.tif" for k in ("GT", "ST")]
            pairs += [(image, m) for m in masks if m.is_file()][:1]
    if not pairs:
        raise DataError(f"no labelled images under {root}: expected ROOT/images + ROOT/masks (same stems), or the "
                        "Cell Tracking Challenge layout ROOT/01/t000.tif + ROOT/01_GT/SEG/man_seg000.tif (or 01_ST)")
    return pairs


def read_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Normalised image ``(C, Z, H, W)``, labels ``(Z, H, W)`` int64, pixel size (µm or None)."""
    image, pixel = read_tiff(image_path)
    labels = read_tiff(mask_path)[0]
    if labels.shape[0] != 1 or labels.shape[1:] != image.shape[1:]:
        raise DataError(f"mask {mask_path} has shape {labels.shape[1:]} (channels {labels.shape[0]}); its image "
                        f"{image_path} has {image.shape[1:]}: they must match")
    return normalize(image), labels[0].astype(np.int64), pixel


def synthetic_image(seed: int, size: int = 128, depth: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint16 image and labels ``(H, W)`` (``depth`` > 0: a stack ``(depth, H, W)`` of ellipsoids 3-6 slices deep):
    touching elliptic nuclei of different sizes and brightness, darker at their contacts, under uneven illumination,
    with shot and read noise."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(size * size // 900, size * size // 500)) * max(1, depth // 4)
    zz, yy, xx = np.mgrid[:max(depth, 1), :size, :size].astype(np.float32)
    cz, rz = (rng.uniform(0, depth, (n, 1, 1, 1)), rng.uniform(3, 6, (n, 1, 1, 1))) if depth else (0.0, np.inf)
    cy, cx = rng.uniform(0, size, (2, n, 1, 1, 1)).astype(np.float32)
    ry, rx = rng.uniform(4, 12, (2, n, 1, 1, 1)).astype(np.float32)
    cos, sin = np.cos(angle := rng.uniform(0, np.pi, (n, 1, 1, 1))), np.sin(angle)
    d = (((yy - cy) * cos + (xx - cx) * sin) / ry) ** 2 + (((xx - cx) * cos - (yy - cy) * sin) / rx) ** 2 + \
        ((zz - cz) / rz) ** 2
    dmin, labels = d.min(0), np.where(d.min(0) < 1, d.argmin(0) + 1, 0)
    signal = np.where(labels > 0, rng.uniform(0.4, 1.4, n + 1)[labels] * (1 - 0.5 * np.clip(dmin, 0, 1) ** 2), 0)
    ramp = 0.6 + 0.8 * (np.cos(rng.uniform(0, np.pi)) * yy + np.sin(rng.uniform(0, np.pi)) * xx) / (2 * size)
    blur = ndimage.gaussian_filter(signal, (1.0 if depth else 0.0, 1.0, 1.0))
    photons = rng.poisson(ramp * (0.15 + blur).clip(0) * 300) + rng.normal(100, 8)
    ids = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)  # hidden nuclei dropped: ids 1..m
    image, ids = np.clip(photons, 0, 65535).astype(np.uint16), ids.astype(np.uint16)
    return (image, ids) if depth else (image[0], ids[0])


def write_tiff(path: Path, data: np.ndarray, pixel_um: float | None = None, axes: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"unit": "um", **({"axes": axes} if axes else {})}  # axes: ImageJ would take a 3D array's first as C
    tifffile.imwrite(path, data, **({} if pixel_um is None else {"imagej": True, "metadata": metadata,
                                                                 "resolution": (1 / pixel_um, 1 / pixel_um)}))


def make_dataset(root: str | os.PathLike, n_images: int = 8, size: int = 128, seed: int = 0,
                 pixel_um: float = 0.5, depth: int = 0) -> Path:
    """Synthetic frames in the CTC layout at a missing ``root`` (``01/tNNN.tif``; gold truth ``01_GT/SEG`` for every
    other frame, silver truth ``01_ST/SEG`` for the rest; ``depth`` > 0: stacks of that many slices), generated
    atomically (:func:`generated_root`)."""

    def generate(folder: Path) -> None:
        for t in range(n_images):
            image, labels = synthetic_image(seed * 1000 + t, size, depth)
            write_tiff(folder / "01" / f"t{t:03d}.tif", image, pixel_um, "ZYX" if depth else None)
            write_tiff(folder / f"01_{'GT' if t % 2 == 0 else 'ST'}" / "SEG" / f"man_seg{t:03d}.tif", labels)

    return generated_root(root, generate, "")


class NucleiWindows(Dataset):
    """``length`` random patch windows of 2D slices (``augment``: flipped and turned; ``fixed``: the same ones on every
    pass, for validation). Samples: ``image`` float32 ``(C, p, p)``, ``mask`` int64 ``(p, p)`` (1 nucleus,
    ``ignore_index`` on padding), ``instances`` int64 ``(p, p)``; ``files``: its ``(image, mask)`` files."""

    def __init__(self, slices: list[tuple[np.ndarray, np.ndarray]], patch: int, meta: dict[str, Any], length: int,
                 augment: bool = True, ignore_index: int = 255, seed: int = 0, files: list = (),
                 fixed: bool = False) -> None:
        self.patch, self.meta, self.length, self.augment, self.files = patch, meta, length, augment, list(files)
        pads = [[(0, max(patch - n, 0)) for n in labels.shape] for _, labels in slices]  # small slices: padded
        self.slices = [(np.pad(image, [(0, 0), *pad], mode="symmetric"), np.pad(
            (labels > 0).astype(np.int64), pad, constant_values=ignore_index), np.pad(labels, pad))
            for (image, labels), pad in zip(slices, pads)]
        self.rng, self.seed, self.fixed = np.random.default_rng(seed), seed, fixed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng, p = np.random.default_rng((self.seed, index)) if self.fixed else self.rng, self.patch
        i = int(rng.integers(len(self.slices)))
        r, c = (int(rng.integers(n - p + 1)) for n in self.slices[i][1].shape)
        arrays = [a[..., r:r + p, c:c + p] for a in self.slices[i]]
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            arrays = [np.rot90(a[..., ::-1] if flip else a, k, axes=(-2, -1)) for a in arrays]
        return {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in zip(("image", "mask", "instances"), arrays)}


class StackPatches(Dataset):
    """3D windows ``patch`` ``(z, y, x)`` of whole stacks for a 3D network, a share ``foreground`` of them placed on
    a nucleus voxel (:mod:`segsuite.core.sampling`, nnU-Net's oversampling); flipped and turned in-plane with
    ``augment``; ``fixed``: the same windows every pass. Samples as :class:`NucleiWindows`' with a z axis."""

    def __init__(self, stacks: list[tuple[np.ndarray, np.ndarray]], patch: list[int], meta: dict[str, Any],
                 length: int, augment: bool = True, ignore_index: int = 255, seed: int = 0, files: list = (),
                 fixed: bool = False, foreground: float = 0.33) -> None:
        self.patch, self.meta, self.length, self.augment, self.files = patch, meta, length, augment, list(files)
        self.ignore, self.seed, self.fixed, self.foreground = ignore_index, seed, fixed, foreground
        # the instance ids ride along as the last image channel (exact in float32 up to 2^24), cropped with it
        self.stacks = [(np.concatenate([image, labels[None].astype(np.float32)]), (labels > 0).astype(np.int64))
                       for image, labels in stacks]
        rng = np.random.default_rng(seed)
        self.locations = [ClassLocations(mask, [1], rng) for _, mask in self.stacks]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=[], enabled=self.fixed):
            if self.fixed:
                torch.manual_seed(self.seed * 100_003 + index)
            i = int(torch.randint(len(self.stacks), ()))
            both, mask = self.stacks[i]
            starts = window_starts(mask.shape, self.patch, self.locations[i].maybe(self.foreground))
            both, mask = crop_window(both, mask, starts, self.patch, self.ignore)
            k, flip = int(torch.randint(4, ())), bool(torch.randint(2, ()))
        arrays = [both[:-1], mask, both[-1].astype(np.int64)]
        if self.augment:
            arrays = [np.rot90(a[..., ::-1] if flip else a, k, axes=(-2, -1)) for a in arrays]
        return {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in zip(("image", "mask", "instances"), arrays)}


def build_datasets(root: str = "data/microscopy_synthetic", synthetic_if_missing: bool = True,
                   synthetic_images: int = 8, synthetic_size: int = 128, patch_size: int | None = None,
                   memory_gb: float = 8.0, batch_size: int | None = None, val_fraction: float = 0.2,
                   samples_per_epoch: int | None = None, augment: bool = True, ignore_index: int = 255,
                   seed: int = 0, spatial_dims: int = 2, synthetic_depth: int = 0) -> dict[str, Dataset]:
    """Train/val windows of the images under ``root``: the last ``val_fraction`` of the gold-truth ones validate (from
    5 labelled images on; else the training images do). Options left None take the plan's value. ``spatial_dims``
    3 (a 3D network): 3D patches of whole stacks (:func:`_stack_datasets`); 2: windows of 2D slices."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 (slices) or 3 (stacks, model=unet3d), got {spatial_dims}")
    root_path = make_dataset(root, synthetic_images, synthetic_size, seed, depth=synthetic_depth) \
        if synthetic_if_missing else \
        generated_root(root, None, "set synthetic_if_missing=true to generate a demo")
    pairs = find_pairs(root_path)
    gold = [p for p in pairs if not p[1].parent.parent.name.endswith("_ST")]  # silver truth trains, never validates
    n_val = int(round(len(gold) * val_fraction)) if len(pairs) >= 5 else 0
    val_pairs = gold[len(gold) - n_val:] or pairs
    train_pairs = [p for p in pairs if p not in val_pairs or not n_val]
    names = [image.relative_to(root_path).as_posix() for image, _ in pairs]
    if (chosen := folds.assign(names)) is not None:  # fold=K folds=N: that fold's images, frame by frame
        train_pairs, val_pairs = ([pairs[names.index(n)] for n in part] for part in chosen)
    elif not n_val:
        log.warning("only %d labelled image(s): validating on the training images", len(pairs))
    read = {p: read_pair(*p) for p in pairs}
    if len(channels := {read[p][0].shape[0] for p in pairs}) > 1:
        raise DataError(f"the images under {root_path} have different channel counts {sorted(channels)}")
    meta = {"domain": "microscopy", "in_channels": int(channels.pop()), "num_classes": 2, "class_names": CLASS_NAMES,
            "class_colors": [[0, 0, 0], [255, 0, 255]], "ignore_index": ignore_index, "has_instances": True,
            "normalization": "percentile 1-99.8 per image", "spatial_dims": spatial_dims}
    if spatial_dims == 3:
        return _stack_datasets([read[p][:2] for p in train_pairs], [read[p][:2] for p in val_pairs], meta, patch_size,
                               memory_gb, batch_size, samples_per_epoch, augment, seed, train_pairs, val_pairs)
    train, val = ([(read[p][0][:, z], read[p][1][z]) for p in chosen for z in range(len(read[p][1]))]
                  for chosen in (train_pairs, val_pairs))
    sizes = [list(lab.shape) for _, lab in train]
    patch = int(patch_size or min(planning.patch_2d(sizes)[0], MAX_PATCH))
    fg = int(sum((lab > 0).sum() for _, lab in train))
    stack = np.concatenate([img.reshape(img.shape[0], -1) for img, _ in train], 1)
    pixels = [read[p][2] for p in train_pairs if read[p][2]]
    fp = planning.Fingerprint(sizes, CLASS_NAMES, [sum(h * w for h, w in sizes) - fg, fg], stack.mean(1).tolist(),
                              stack.std(1).tolist(), float(np.median(pixels)) if pixels else None)
    plan = planning.make_plan(fp, [patch, patch], memory_gb, batch_size)
    log.info("%s", planning.summary(plan))
    meta.update(patch_size=[patch, patch], plan=plan, batch_size=int(plan["batch_size"]), pixel_size_um=fp.resolution)
    windows = max(int(fp.train_pixels) // patch**2, int(plan["batch_size"]))  # an epoch: about one pass
    val_windows = max(sum(lab.size for _, lab in val) // patch**2, 1)
    return {"train": NucleiWindows(train, patch, meta, samples_per_epoch or windows, augment, ignore_index, seed,
                                   train_pairs),
            "val": NucleiWindows(val, patch, meta, 2 * val_windows, False, ignore_index, seed, val_pairs, True)}


def _stack_datasets(train: list, val: list, meta: dict[str, Any], patch_size: list[int] | None, memory_gb: float,
                    batch_size: int | None, samples_per_epoch: int | None, augment: bool, seed: int, train_pairs: list,
                    val_pairs: list) -> dict[str, StackPatches]:
    """3D patches of whole stacks ``(C, Z, H, W)``: patch and batch by nnU-Net's 3D rules (:mod:`segsuite.core.plan3d`)
    on voxels taken as isotropic (TIFFs rarely record the z step), unless ``patch_size`` ``[z, y, x]`` is given."""
    if any(lab.shape[0] == 1 for _, lab in train + val):
        raise DataError("a 3D network (model=unet3d) trains on stacks (Z, Y, X), but some images are 2D: use a 2D "
                        "model, or synthetic_depth=16 with a new root for synthetic stacks")
    sizes = [list(lab.shape) for _, lab in train]
    voxels = int(sum(lab.size for _, lab in train))
    patch, batch = plan3d.patches(np.median(sizes, 0), [1.0] * 3, 0, memory_gb, voxels)[3]
    patch = [int(p) for p in patch_size] if patch_size is not None else patch
    if len(patch) != 3:
        raise ConfigError(f"patch_size must be [z, y, x] for a 3D network, got {patch}")
    fg = int(sum((lab > 0).sum() for _, lab in train))
    stack = np.concatenate([img.reshape(img.shape[0], -1) for img, _ in train], 1)
    fp = planning.Fingerprint(sizes, CLASS_NAMES, [voxels - fg, fg], stack.mean(1).tolist(), stack.std(1).tolist(),
                              train_pixels=voxels)
    plan = planning.make_plan(fp, patch, memory_gb, batch_size or batch)
    log.info("3D plan: patch %s (z, y, x), batch %d, %d steps", patch, plan["batch_size"], plan["budget"]["max_steps"])
    meta.update(patch_size=patch, plan=plan, batch_size=int(plan["batch_size"]), pixel_size_um=None,
                model_defaults={"patch_size": patch, "spacing": [1.0, 1.0, 1.0]})  # unet3d's nulls (core.train)
    n = max(voxels // int(np.prod(patch)), int(plan["batch_size"]))
    n_val = 2 * max(sum(lab.size for _, lab in val) // int(np.prod(patch)), 1)
    return {"train": StackPatches(train, patch, meta, samples_per_epoch or n, augment, meta["ignore_index"], seed,
                                  train_pairs),
            "val": StackPatches(val, patch, meta, n_val, False, meta["ignore_index"], seed, val_pairs, True)}
