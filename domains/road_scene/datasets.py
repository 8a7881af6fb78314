"""Datasets for driving scenes: Cityscapes, CamVid, KITTI road and a generic images + index-masks folder.

Samples: ``{"image": float32 (3, H, W) ImageNet-normalised, "mask": int64 (H, W)}`` (ignored pixels
``ignore_index``), plus ``"instances": int64 (H, W)`` for Cityscapes with ``*_gtFine_instanceIds.png`` files (values
>= 1000, ``label_id * 1000 + k``, kept; 0 elsewhere and where the mask is ignored; ``meta["has_instances"]``).
Training samples are augmented (random scale ``train_scale * U(scale_range)``, pad + crop to ``crop_size``,
horizontal flip, colour jitter; torch's RNG); val/test samples are full-resolution frames, only normalised.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from segsuite.core import folds
from segsuite.core import plan as planning
from segsuite.core.classmap import load_class_map
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.files import Pair, files_in, first_existing, generated_root, nonempty, pair_by_stem, require_dir
from segsuite.core.images import IMAGE_SUFFIXES, ColorDecoder, IndexDecoder, image_size, read_index_label, read_rgb
from segsuite.core.splits import split_names

from . import labels as lb
from .augment import TrainAugment
from .synthetic import make_dataset

log = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LAYOUTS = ("cityscapes", "camvid", "kitti", "folder")
INSTANCE_OFFSET = 1000  # Cityscapes instanceIds: label_id * 1000 + k for things, plain label ids below


class RoadSceneDataset(Dataset):
    """Image/label file pairs decoded into the sample contract; ``files`` lists the pairs for writing outputs;
    ``instance_files`` (one per pair, or None) the Cityscapes ``*_instanceIds.png`` files."""

    def __init__(self, files: list[Pair], decode: Callable[[Path], np.ndarray], meta: dict,
                 augment: TrainAugment | None = None, instance_files: list[Path] | None = None) -> None:
        if instance_files is not None and len(instance_files) != len(files):
            raise ConfigError(f"{len(instance_files)} instance files for {len(files)} image/label pairs")
        self.files = list(files)
        self.instance_files = None if instance_files is None else list(instance_files)
        self.decode, self.meta, self.augment = decode, meta, augment  # meta: plain Python, stored in the checkpoint
        norm = meta["normalization"]
        self._mean = torch.tensor(norm["mean"]).view(3, 1, 1)
        self._std = torch.tensor(norm["std"]).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw pair: image ``(H, W, 3)`` float32 in [0, 1] and mask ``(H, W)`` int64; sizes must agree."""
        image_path, label_path = self.files[index]
        image, mask = read_rgb(image_path), self.decode(label_path)
        if image.shape[:2] != mask.shape:
            raise DataError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} (HxW) but its label "
                            f"{label_path} is {mask.shape[0]}x{mask.shape[1]}")
        return image, mask

    def load_instances(self, index: int, mask: np.ndarray) -> np.ndarray | None:
        """Instance ids ``(H, W)`` int64 of pair ``index`` (None without instance files): instanceIds values
        >= 1000 are kept, smaller ones (stuff, crowd regions) and pixels where ``mask`` is ignored become 0."""
        if self.instance_files is None:
            return None
        path = self.instance_files[index]
        raw = read_index_label(path).astype(np.int64)
        if raw.shape != mask.shape:
            raise DataError(f"instance ids {path} are {raw.shape[0]}x{raw.shape[1]} (HxW) but the label "
                            f"{self.files[index][1]} is {mask.shape[0]}x{mask.shape[1]}")
        return np.where((raw >= INSTANCE_OFFSET) & (mask != self.meta["ignore_index"]), raw, 0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_np, mask_np = self.load(index)
        instances_np = self.load_instances(index, mask_np)
        image = torch.from_numpy(np.ascontiguousarray(image_np.transpose(2, 0, 1)))  # (3, H, W)
        labels = [torch.from_numpy(mask_np)] + ([] if instances_np is None else [torch.from_numpy(instances_np)])
        if self.augment is not None:
            image, *labels = self.augment(image, *labels)
        image = (image.as_subclass(torch.Tensor) - self._mean) / self._std
        sample = {"image": image.float().contiguous(), "mask": labels[0].as_subclass(torch.Tensor).long().contiguous()}
        if instances_np is not None:
            sample["instances"] = labels[1].as_subclass(torch.Tensor).long().contiguous()
        return sample


def cityscapes_files(root: Path, split: str) -> list[Pair]:
    """``leftImg8bit/{split}/CITY/*_leftImg8bit.png`` with ``gtFine/{split}/CITY/*_gtFine_labelIds.png``."""
    image_dir = require_dir(root / "leftImg8bit" / split, "Cityscapes image")
    gt = root / "gtFine" / split
    pairs = [first_existing(img, [gt / img.parent.name / img.name.replace("_leftImg8bit", "_gtFine_labelIds")])
             for img in files_in(image_dir, IMAGE_SUFFIXES, "*/*_leftImg8bit.png")]
    return nonempty(pairs, image_dir, IMAGE_SUFFIXES)


def cityscapes_instance_files(splits: dict[str, list[Pair]]) -> dict[str, list[Path]] | None:
    """``*_gtFine_instanceIds.png`` beside every ``*_gtFine_labelIds.png`` of ``splits``; None when there are none
    at all (a labelIds-only copy); DataError naming the missing ones when only some exist."""
    found = {s: [lbl.with_name(lbl.name.replace("_labelIds", "_instanceIds")) for _, lbl in pairs]
             for s, pairs in splits.items()}
    missing = [p for paths in found.values() for p in paths if not p.is_file()]
    total = sum(len(paths) for paths in found.values())
    if len(missing) == total:
        return None
    if missing:
        shown = ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} of {total} Cityscapes instance id files are missing: {shown} "
                        "(give every labelIds file its *_gtFine_instanceIds.png, or remove them all)")
    return found


def camvid_files(root: Path, split: str) -> tuple[list[Pair], bool]:
    """CamVid ``{split}/`` images with index labels in ``{split}annot/`` (SegNet layout, same name) or colour
    labels in ``{split}_labels/`` (same name or ``*_L.png``). Returns the pairs and whether labels are colour."""
    image_dir = require_dir(root / split, "CamVid image")
    index_dir, color_dir = root / f"{split}annot", root / f"{split}_labels"
    if not index_dir.is_dir() and not color_dir.is_dir():
        raise DataError(f"no CamVid label directory for split '{split}': expected {index_dir} or {color_dir}")
    label_dir = index_dir if index_dir.is_dir() else color_dir
    pairs = [first_existing(img, [label_dir / f"{img.stem}.png", label_dir / f"{img.stem}_L.png"])
             for img in files_in(image_dir, IMAGE_SUFFIXES)]
    return nonempty(pairs, image_dir, IMAGE_SUFFIXES), label_dir == color_dir


def kitti_files(root: Path) -> list[Pair]:
    """KITTI road ``training/image_2/{cat}_{num}.png`` with ``training/gt_image_2/{cat}_road_{num}.png``."""
    image_dir = require_dir(root / "training" / "image_2", "KITTI image")
    gt_dir = root / "training" / "gt_image_2"
    pairs = []
    for img in files_in(image_dir, IMAGE_SUFFIXES, "*.png"):
        category, _, number = img.stem.rpartition("_")
        pairs.append(first_existing(img, [gt_dir / f"{category}_road_{number}.png"]))
    return nonempty(pairs, image_dir, IMAGE_SUFFIXES)


def _split(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A seeded ``val_fraction`` of the pairs validates (:func:`~segsuite.core.splits.split_names` by image name)."""
    by_name = {image.name: (image, mask) for image, mask in pairs}
    return tuple([by_name[n] for n in part] for part in split_names(list(by_name), val_fraction, None, seed, "images"))


def _fold(spec: _Layout, layout: str) -> None:
    """The requested k-fold (``fold=K``, :mod:`segsuite.core.folds`) over the train and val images pooled: whole
    cities (Cityscapes) or sequences (CamVid) per fold, single images otherwise; the test split stays."""
    pooled = spec.splits["train"] + spec.splits["val"]
    names = [str(img.relative_to(img.parents[1])) if layout == "cityscapes" else img.stem for img, _ in pooled]
    groups = [img.parent.name if layout == "cityscapes" else img.stem.split("_")[0] if layout == "camvid" else n
              for (img, _), n in zip(pooled, names, strict=True)]
    chosen = folds.assign(names, groups)
    if chosen is None:
        return
    by_name = dict(zip(names, range(len(pooled)), strict=True))
    picked = {split: [by_name[n] for n in chosen[i]] for i, split in enumerate(("train", "val"))}
    if spec.instances is not None:
        paths = spec.instances["train"] + spec.instances["val"]
        spec.instances.update({split: [paths[i] for i in idx] for split, idx in picked.items()})
    spec.splits.update({split: [pooled[i] for i in idx] for split, idx in picked.items()})


@dataclass
class _Layout:
    """What a layout contributes: split file lists, the label decoder and label metadata."""

    splits: dict[str, list[Pair]]
    decode: Callable[[Path], np.ndarray]
    meta: dict
    instances: dict[str, list[Path]] | None = None


def _cityscapes(root: Path, ignore_index: int) -> _Layout:
    splits = {s: cityscapes_files(root, s) for s in ("train", "val")}
    if (root / "leftImg8bit" / "test").is_dir():
        splits["test"] = cityscapes_files(root, "test")
    decode = IndexDecoder(lb.cityscapes_id_to_train_id(ignore_index), "Cityscapes label ids 0..33")
    meta = {"class_names": list(lb.CITYSCAPES_CLASS_NAMES), "class_colors": [list(c) for c in lb.CITYSCAPES_COLORS],
            "label_format": "index", "native_ids": list(lb.CITYSCAPES_TRAIN_ID_TO_ID),
            "native_void_id": lb.CITYSCAPES_VOID_ID,
            "categories": {"names": list(lb.CITYSCAPES_CATEGORIES),
                           "class_to_category": list(lb.CITYSCAPES_TRAIN_ID_TO_CATEGORY)}}
    return _Layout(splits, decode, meta, cityscapes_instance_files(splits))


def _camvid(root: Path, ignore_index: int, classes: list[str] | None) -> _Layout:
    names = lb.camvid_classes(classes)
    found = {s: camvid_files(root, s) for s in ("train", "val", "test") if s != "test" or (root / "test").is_dir()}
    colour = {is_colour for _, is_colour in found.values()}
    if len(colour) > 1:
        raise DataError(f"CamVid root {root} mixes index ('*annot') and colour ('*_labels') label directories")
    if colour.pop():
        decode: Callable = ColorDecoder(lb.camvid_color_table(names, ignore_index))
    else:
        decode = IndexDecoder(lb.camvid_index_lut(names, ignore_index),
                              f"CamVid indices 0..{lb.CAMVID_VOID_INDEX} ({lb.CAMVID_VOID_INDEX} = Void)")
    meta = {"class_names": names, "class_colors": [list(lb.CAMVID_COLORS[n]) for n in names], "label_format": "index",
            "native_ids": [lb.CAMVID_CLASSES.index(n) for n in names], "native_void_id": lb.CAMVID_VOID_INDEX}
    return _Layout({s: pairs for s, (pairs, _) in found.items()}, decode, meta)


def _kitti(root: Path, ignore_index: int, val_fraction: float, seed: int) -> _Layout:
    train, val = _split(kitti_files(root), val_fraction, seed)
    meta = {"class_names": list(lb.KITTI_CLASSES), "class_colors": [list(c) for c in lb.KITTI_COLORS],
            "label_format": "kitti_road", "road_class": 1}
    return _Layout({"train": train, "val": val}, ColorDecoder(lb.kitti_road_color_table(ignore_index)), meta)


def _folder(root: Path, ignore_index: int, class_map: str | None, val_fraction: float, seed: int) -> _Layout:
    cmap_path = Path(class_map) if class_map else next(
        (root / n for n in ("classes.json", "classes.csv") if (root / n).is_file()), root / "classes.json")
    cmap = load_class_map(cmap_path)
    if ignore_index in cmap.ids:
        raise ConfigError(f"ignore_index={ignore_index} is also a class id in {cmap_path}; choose another")
    if (root / "images" / "train").is_dir():
        splits = {s: pair_by_stem(root / "images" / s, root / "masks" / s, IMAGE_SUFFIXES)
                  for s in ("train", "val", "test") if s != "test" or (root / "images" / "test").is_dir()}
    else:
        train, val = _split(pair_by_stem(root / "images", root / "masks", IMAGE_SUFFIXES), val_fraction, seed)
        splits = {"train": train, "val": val}
    accepted = f"class ids {cmap.ids} from {cmap_path} and {ignore_index} (ignore)"
    decode = IndexDecoder(cmap.index_lut(ignore_index), accepted)
    meta = {"class_names": list(cmap.names), "class_colors": [list(c) for c in cmap.colors], "label_format": "index",
            "native_ids": list(cmap.ids), "native_void_id": ignore_index}
    return _Layout(splits, decode, meta)


def _check_config(layout: str, crop_size, train_scale, scale_range, ignore_index, hflip_prob, color_jitter,
                  val_fraction) -> None:
    """Raise ConfigError naming the first invalid value and what is accepted."""
    checks = [
        (layout in LAYOUTS, f"layout={layout!r}: accepted {list(LAYOUTS)}"),
        (crop_size is None or (len(crop_size) == 2 and all(int(v) == v and v > 0 for v in crop_size)),
         f"crop_size={crop_size}: expected [h, w] positive integers or null"),
        (train_scale > 0, f"train_scale={train_scale}: expected > 0"),
        (len(scale_range) == 2 and 0 < scale_range[0] <= scale_range[1],
         f"scale_range={scale_range}: expected [min, max] with 0 < min <= max"),
        (int(ignore_index) == ignore_index and 0 <= ignore_index <= 255,
         f"ignore_index={ignore_index}: expected 0..255"),
        (0 <= hflip_prob <= 1, f"hflip_prob={hflip_prob}: expected 0..1"),
        (len(color_jitter) == 4 and all(v >= 0 for v in color_jitter) and color_jitter[3] <= 0.5,
         f"color_jitter={color_jitter}: expected [brightness, contrast, saturation, hue] >= 0, hue <= 0.5"),
        (0 < val_fraction < 1, f"val_fraction={val_fraction}: expected 0 < value < 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


PLAN_LABELS = 64  # label files read (seeded sample) for the plan's class frequencies


def plan_training(pairs: list[Pair], decode: Callable[[Path], np.ndarray], class_names: list[str],
                  crop: list[int] | None, train_scale: float, memory_gb: float, batch_size: int | None,
                  seed: int = 0) -> dict:
    """The core plan (:mod:`segsuite.core.plan`) of the training frames: sizes from every image header (at
    ``train_scale``), class frequencies from up to :data:`PLAN_LABELS` labels; the patch is ``crop`` or the whole
    (scaled) frame, the batch ``batch_size`` or the memory budget's."""
    sizes = [[max(1, round(n * train_scale)) for n in image_size(image)] for image, _ in pairs]
    pixels = np.zeros(len(class_names), np.int64)
    rng = np.random.default_rng(seed)
    for i in sorted(rng.choice(len(pairs), min(PLAN_LABELS, len(pairs)), replace=False)):
        mask = decode(pairs[int(i)][1])
        pixels += np.bincount(mask[mask < len(class_names)].ravel(), minlength=len(class_names))[:len(class_names)]
    fingerprint = planning.Fingerprint(sizes=sizes, class_names=list(class_names), class_pixels=pixels.tolist(),
                                       channel_mean=list(IMAGENET_MEAN), channel_std=list(IMAGENET_STD))
    patch = crop or [int(np.median([h for h, _ in sizes])), int(np.median([w for _, w in sizes]))]
    return planning.make_plan(fingerprint, patch, memory_gb, batch=batch_size, labels_sampled=min(PLAN_LABELS,
                                                                                                  len(pairs)))


def build_datasets(root: str, layout: str = "cityscapes", crop_size: list[int] | None = None,
                   train_scale: float = 1.0, scale_range: list[float] = (0.5, 2.0), ignore_index: int = 255,
                   synthetic_if_missing: bool = False, seed: int = 0, hflip_prob: float = 0.5,
                   color_jitter: list[float] = (0.2, 0.2, 0.2, 0.0), classes: list[str] | None = None,
                   class_map: str | None = None, val_fraction: float = 0.2, synthetic_size: list[int] = (128, 256),
                   synthetic_n_train: int = 24, synthetic_n_val: int = 6, memory_gb: float = 8.0,
                   batch_size: int | None = None) -> dict[str, RoadSceneDataset]:
    """Build ``{"train", "val"[, "test"]}`` datasets for ``layout``:

    - ``cityscapes``: ``leftImg8bit/`` + ``gtFine/*_labelIds.png``, ids -> 19 trainIds (test if present);
      items carry "instances" when ``*_gtFine_instanceIds.png`` files are there (all of them, or none);
    - ``camvid``: ``{split}/`` + ``{split}annot/`` (index 0..10, 11 Void) or ``{split}_labels/`` (colour);
      ``classes`` picks and orders CamVid classes (default all 11), the others become ignore;
    - ``kitti``: ``training/image_2`` + ``training/gt_image_2/*_road_*.png``, binary road (0 non-road, 1 road),
      split into train/val by ``val_fraction`` and ``seed``;
    - ``folder``: ``images/`` + ``masks/`` (index PNGs of class ids), either with ``train``/``val``[/``test``]
      subfolders or flat (split by ``val_fraction``), and ``class_map`` (default ``root/classes.json|csv``).

    Training is at ``train_scale`` times the original resolution (times a random factor from ``scale_range``)
    and cropped to ``crop_size`` [h, w]; val/test stay at full resolution. The training frames are planned first
    (:func:`plan_training`, logged, kept in ``meta["plan"]``): batch size (``batch_size``, else budgeted for
    ``memory_gb``), class frequencies and the step budget. If ``root`` does not exist and
    ``synthetic_if_missing`` is true (cityscapes layout only), a synthetic set is generated there first.
    """
    root_path = Path(root)
    scale_range, color_jitter = [float(v) for v in scale_range], [float(v) for v in color_jitter]
    crop = None if crop_size is None else [int(v) for v in crop_size]
    _check_config(layout, crop_size, train_scale, scale_range, ignore_index, hflip_prob, color_jitter, val_fraction)
    if not root_path.exists() and synthetic_if_missing and layout != "cityscapes":
        raise ConfigError(f"synthetic_if_missing generates Cityscapes layout; layout={layout!r} is not 'cityscapes'")
    generate = functools.partial(make_dataset, n_train=synthetic_n_train, n_val=synthetic_n_val,
                                 size=tuple(synthetic_size), seed=seed) if synthetic_if_missing else None
    generated_root(root_path, generate, "set synthetic_if_missing=true to generate a synthetic Cityscapes-layout "
                   "set there")

    if layout == "cityscapes":
        spec = _cityscapes(root_path, ignore_index)
    elif layout == "camvid":
        spec = _camvid(root_path, ignore_index, classes)
    elif layout == "kitti":
        spec = _kitti(root_path, ignore_index, val_fraction, seed)
    else:
        spec = _folder(root_path, ignore_index, class_map, val_fraction, seed)
    _fold(spec, layout)

    if ignore_index < len(spec.meta["class_names"]):
        raise ConfigError(f"ignore_index={ignore_index} collides with a class index (classes are 0.."
                          f"{len(spec.meta['class_names']) - 1}); use a value >= {len(spec.meta['class_names'])}")
    meta = {
        "in_channels": 3,
        "num_classes": len(spec.meta["class_names"]),
        "ignore_index": int(ignore_index),
        "patch_size": crop or list(image_size(spec.splits["train"][0][0])),
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input_range": [0.0, 1.0]},
        "image_conversion": "8-bit /255, 16-bit /65535; grey replicated to 3 channels; alpha dropped; palette to RGB",
        "layout": layout,
        "train_scale": float(train_scale),
        "has_instances": spec.instances is not None,
        **spec.meta,
    }
    meta["plan"] = plan_training(spec.splits["train"], spec.decode, list(meta["class_names"]), crop, train_scale,
                                 memory_gb, batch_size, seed)
    meta["batch_size"] = int(meta["plan"]["batch_size"])
    log.info("%s", planning.summary(meta["plan"]))
    augment = TrainAugment(crop, scale_range, train_scale, hflip_prob, color_jitter, ignore_index)
    return {split: RoadSceneDataset(pairs, spec.decode, meta, augment if split == "train" else None,
                                    None if spec.instances is None else spec.instances[split])
            for split, pairs in spec.splits.items()}
