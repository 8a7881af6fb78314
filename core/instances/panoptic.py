"""Panoptic maps in the formats other tools read: the COCO panoptic PNG colour encoding with its ``segments_info``,
and the Cityscapes ``*_instanceIds.png`` label-divisor encoding.

Works on 2D images ``(H, W)`` and 3D volumes ``(D, H, W)`` alike (any number of dimensions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances.extract import Instances

MAX_RGB_ID = 256**3 - 1


def rgb_from_ids(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic colours (as panopticapi ``id2rgb``): ``id = R + 256 G + 256² B``.

    Shape:
        ids: ``(...)`` ints in 0..256³-1; returns uint8 ``(..., 3)``.
    """
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"panoptic ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() > MAX_RGB_ID):
        raise DataError(f"panoptic ids {ids.min()}..{ids.max()} do not fit the RGB encoding; accepted: 0..{MAX_RGB_ID}")
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)


def ids_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_from_ids` (as panopticapi ``rgb2id``): uint8 ``(..., 3)`` -> int64 ``(...)``."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 0 or rgb.shape[-1] != 3 or not np.issubdtype(rgb.dtype, np.integer):
        raise DataError(f"a panoptic RGB image must be integers of shape (..., 3), got {rgb.dtype} {rgb.shape}")
    if rgb.size and (rgb.min() < 0 or rgb.max() > 255):
        raise DataError(f"panoptic RGB values {rgb.min()}..{rgb.max()} are out of range; accepted: 0..255")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def _checked(semantic: np.ndarray, instances: Instances, things: Sequence[int], category_ids: Sequence[int] | None,
             ignore_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the inputs; returns the class map with ignored pixels set to -1, the class -> category lookup
    ``(K,)`` and the thing-class mask ``(K,)``."""
    semantic = np.asarray(semantic)
    ids = instances.ids
    if ids.shape != semantic.shape:
        raise DataError(f"instance ids {ids.shape} and semantic map {semantic.shape} differ in shape")
    if ids.size and (ids.min() < 0 or ids.max() > instances.n):
        raise DataError(f"instance ids {ids.min()}..{ids.max()} are out of range; the instance classes list "
                        f"{instances.n} instances (ids 0..{instances.n})")
    semantic = np.where(semantic == ignore_index, -1, semantic).astype(np.int64)
    if category_ids is None:
        category_ids = range(max(int(semantic.max(initial=0)), *things, -1) + 1)
    lookup = np.asarray(category_ids, np.int64)
    if any(not 0 <= t < len(lookup) for t in things):
        raise ConfigError(f"thing classes {list(things)} are out of range; there are {len(lookup)} classes")
    if semantic.min(initial=0) < -1 or semantic.max(initial=0) >= len(lookup):
        raise DataError(f"semantic classes {sorted(np.unique(semantic[semantic >= 0]).tolist())} are out of range; "
                        f"accepted: 0..{len(lookup) - 1} and ignore index {ignore_index}")
    thing = np.zeros(len(lookup), bool)
    thing[list(things)] = True
    classes = np.asarray(instances.classes, np.int64)[1:]
    if np.any(classes < 0) or np.any(classes >= len(lookup)) or not thing[classes].all():
        raise DataError(f"instance classes {sorted(set(classes.tolist()))} must all be thing classes {sorted(things)}")
    return semantic, lookup, thing


def panoptic_segments(semantic: np.ndarray, instances: Instances, things: Sequence[int],
                      category_ids: Sequence[int] | None = None,
                      ignore_index: int = 255) -> tuple[np.ndarray, list[dict]]:
    """COCO/Cityscapes panoptic segments: one per stuff class present, one per (non-empty) instance.

    Instance pixels belong to their instance; other pixels of a stuff class to that class's segment; thing-class
    pixels outside every instance and ``ignore_index`` pixels are void (0). Segments are numbered 1..S, stuff first
    (by class), then instances (by id).

    Args:
        semantic: class indices ``(H, W)`` or ``(D, H, W)``.
        instances: thing instances on the same grid.
        things: class indices of the thing classes.
        category_ids: category id of each class index (default: the index itself).

    Returns:
        segment ids int32 (same shape, 0 = void) and ``segments_info``: ``{"id", "category_id", "iscrowd", "area",
        "bbox", "isthing"}`` per segment, plain ints; bbox is ``[x, y, w, h]`` in 2D, ``[x, y, z, w, h, d]`` in 3D,
        x along the last axis.
    """
    semantic, lookup, thing = _checked(semantic, instances, things, category_ids, ignore_index)
    ids = instances.ids
    stuff_pixels = (ids == 0) & (semantic >= 0) & ~thing[semantic]  # thing[-1] is only read where masked out
    stuff_classes = np.unique(semantic[stuff_pixels])
    stuff_lut = np.zeros(len(lookup) + 1, np.int32)  # class -> segment id; last entry (class -1): void
    stuff_lut[stuff_classes] = np.arange(1, len(stuff_classes) + 1)
    present = np.flatnonzero(np.bincount(ids.ravel(), minlength=instances.n + 1)[1:]) + 1
    inst_lut = np.zeros(instances.n + 1, np.int32)  # instance id -> segment id
    inst_lut[present] = np.arange(1, len(present) + 1) + len(stuff_classes)
    segments = np.where(stuff_pixels, stuff_lut[semantic], inst_lut[ids])
    segment_classes = np.concatenate([stuff_classes, np.asarray(instances.classes, np.int64)[present]])
    areas = np.bincount(segments.ravel(), minlength=len(segment_classes) + 1)
    info = []
    for sid, (cls, box) in enumerate(zip(segment_classes, ndimage.find_objects(segments)), start=1):
        start = [s.start for s in reversed(box)]
        size = [s.stop - s.start for s in reversed(box)]
        info.append({"id": sid, "category_id": int(lookup[cls]), "iscrowd": 0, "area": int(areas[sid]),
                     "bbox": start + size, "isthing": int(thing[cls])})
    return segments.astype(np.int32), info


def label_divisor_ids(semantic: np.ndarray, instances: Instances, things: Sequence[int],
                      category_ids: Sequence[int] | None = None, divisor: int = 1000, ignore_value: int = 0,
                      ignore_index: int = 255) -> np.ndarray:
    """The Cityscapes ``*_instanceIds.png`` encoding, int32 of the same shape.

    Instance pixels get ``category * divisor + k``, k = 0, 1, ... counted per category in order of instance id;
    other pixels their category id; ``ignore_index`` pixels ``ignore_value``.
    """
    semantic, lookup, thing = _checked(semantic, instances, things, category_ids, ignore_index)
    if divisor < 1 or divisor**2 - 1 > np.iinfo(np.int32).max:
        raise ConfigError(f"divisor must be 1..46340 (codes up to divisor² - 1 must fit int32), got {divisor}")
    if lookup.min(initial=0) < 0 or lookup.max(initial=0) >= divisor:
        raise ConfigError(f"category ids {lookup.min()}..{lookup.max()} must lie in 0..{divisor - 1} (the divisor)")
    if np.any(lookup[thing] == 0):
        raise ConfigError("a thing class has category id 0, which cannot carry instances in the label-divisor "
                          "encoding (ids below the divisor mean 'no instance'); pass category_ids")
    categories = lookup[np.asarray(instances.classes, np.int64)[1:]]
    order = np.argsort(categories, kind="stable")  # by category, then instance id
    first = np.searchsorted(categories[order], categories[order])
    k = np.empty(len(categories), np.int64)
    k[order] = np.arange(len(categories)) - first
    if len(k) and k.max() >= divisor:
        raise DataError(f"a category has {k.max() + 1} instances; the divisor {divisor} allows at most {divisor}")
    inst_code = np.concatenate([[0], categories * divisor + k])
    other = np.where(semantic >= 0, lookup[semantic], ignore_value)  # lookup[-1] is only read where masked out
    return np.where(instances.ids > 0, inst_code[instances.ids], other).astype(np.int32)


def split_label_divisor(ids: np.ndarray, divisor: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`label_divisor_ids`: category ids and instance numbers (-1 where ``ids < divisor``)."""
    ids = np.asarray(ids).astype(np.int64)
    has_instance = ids >= divisor
    return np.where(has_instance, ids // divisor, ids), np.where(has_instance, ids % divisor, -1)
