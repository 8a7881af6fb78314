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

from segsuite.core import folds
from segsuite.core import plan as planning
from segsuite.core.errors import DataError
from segsuite.core.files import files_in, generated_root, pair_by_stem

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


def synthetic_image(seed: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """uint16 image and labels ``(H, W)``: touching elliptic nuclei of different sizes and brightness, darker at their
    contacts, under uneven illumination, with shot and read noise."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(size * size // 900, size * size // 500))
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = rng.uniform(0, size, (2, n, 1, 1)).astype(np.float32)
    ry, rx = rng.uniform(4, 12, (2, n, 1, 1)).astype(np.float32)
    cos, sin = np.cos(angle := rng.uniform(0, np.pi, (n, 1, 1))), np.sin(angle)
    d = (((yy - cy) * cos + (xx - cx) * sin) / ry) ** 2 + (((xx - cx) * cos - (yy - cy) * sin) / rx) ** 2
    dmin, labels = d.min(0), np.where(d.min(0) < 1, d.argmin(0) + 1, 0)
    signal = np.where(labels > 0, rng.uniform(0.4, 1.4, n + 1)[labels] * (1 - 0.5 * np.clip(dmin, 0, 1) ** 2), 0)
    ramp = 0.6 + 0.8 * (np.cos(rng.uniform(0, np.pi)) * yy + np.sin(rng.uniform(0, np.pi)) * xx) / (2 * size)
    photons = rng.poisson(ramp * (0.15 + ndimage.gaussian_filter(signal, 1.0)).clip(0) * 300) + rng.normal(100, 8)
    ids = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)  # hidden nuclei dropped: ids 1..m
    return np.clip(photons, 0, 65535).astype(np.uint16), ids.astype(np.uint16)


def write_tiff(path: Path, data: np.ndarray, pixel_um: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, **({} if pixel_um is None else {"imagej": True, "metadata": {"unit": "um"},
                                                                 "resolution": (1 / pixel_um, 1 / pixel_um)}))


def make_dataset(root: str | os.PathLike, n_images: int = 8, size: int = 128, seed: int = 0,
                 pixel_um: float = 0.5) -> Path:
    """Synthetic frames in the CTC layout at a missing ``root`` (``01/tNNN.tif``; gold truth ``01_GT/SEG`` for every
    other frame, silver truth ``01_ST/SEG`` for the rest), generated atomically (:func:`generated_root`)."""

    def generate(folder: Path) -> None:
        for t in range(n_images):
            image, labels = synthetic_image(seed * 1000 + t, size)
            write_tiff(folder / "01" / f"t{t:03d}.tif", image, pixel_um)
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


def build_datasets(root: str = "data/microscopy_synthetic", synthetic_if_missing: bool = True,
                   synthetic_images: int = 8, synthetic_size: int = 128, patch_size: int | None = None,
                   memory_gb: float = 8.0, batch_size: int | None = None, val_fraction: float = 0.2,
                   samples_per_epoch: int | None = None, augment: bool = True, ignore_index: int = 255,
                   seed: int = 0) -> dict[str, NucleiWindows]:
    """Train/val windows of the images under ``root``: the last ``val_fraction`` of the gold-truth ones validate (from
    5 labelled images on; else the training images do). Options left None take the plan's value."""
    root_path = make_dataset(root, synthetic_images, synthetic_size, seed) if synthetic_if_missing else \
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
    meta = {"domain": "microscopy", "in_channels": int(channels.pop()), "num_classes": 2, "class_names": CLASS_NAMES,
            "class_colors": [[0, 0, 0], [255, 0, 255]], "ignore_index": ignore_index, "patch_size": [patch, patch],
            "has_instances": True, "normalization": "percentile 1-99.8 per image", "plan": plan,
            "batch_size": int(plan["batch_size"]), "pixel_size_um": fp.resolution}
    windows = max(int(fp.train_pixels) // patch**2, int(plan["batch_size"]))  # an epoch: about one pass
    val_windows = max(sum(lab.size for _, lab in val) // patch**2, 1)
    return {"train": NucleiWindows(train, patch, meta, samples_per_epoch or windows, augment, ignore_index, seed,
                                   train_pairs),
            "val": NucleiWindows(val, patch, meta, 2 * val_windows, False, ignore_index, seed, val_pairs, True)}
