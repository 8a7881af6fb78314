"""Writing predictions in each driving dataset's own format (Cityscapes label ids, CamVid/class-map indices, KITTI
road probabilities). Writers refuse an existing file unless ``overwrite`` (predict writes into the core's staging
folder, which commits all files or none). Images are read by :mod:`segsuite.core.images`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segsuite.core.overlay import check_labels, class_index
from segsuite.core.png import save_png

from .labels import cityscapes_train_id_to_id


def write_cityscapes_label_ids(train_ids: np.ndarray, path: str | Path, overwrite: bool = False) -> Path:
    """Write trainIds ``(H, W)`` as a Cityscapes label-id PNG (uint8 ids, what ``cityscapesscripts`` evaluates).
    Values outside 0..18 (ignore) become id 0 'unlabeled'."""
    train_ids = check_labels(train_ids)
    lut = cityscapes_train_id_to_id()
    return save_png(lut[np.clip(train_ids, 0, 255)], path, overwrite)


def write_index_label(labels: np.ndarray, native_ids: list[int], void_id: int, path: str | Path,
                      overwrite: bool = False) -> Path:
    """Write class indices ``(H, W)`` mapped to the dataset's own values (``native_ids[index]``, others -> ``void_id``);
    uint8 PNG when every value fits, otherwise uint16."""
    table = np.append(np.asarray(native_ids, dtype=np.int64), void_id)  # the last entry: every other value
    table = table.astype(np.uint8 if table.max() <= 255 else np.uint16)
    return save_png(table[class_index(labels, len(native_ids), -1)], path, overwrite)  # uint8 maps: two look-ups


def write_kitti_road(road_prob: np.ndarray, path: str | Path, binary: bool = False, overwrite: bool = False) -> Path:
    """Write a KITTI road result ``(H, W)``: uint8 grey PNG of round(255 * P(road)) as the devkit's evaluateRoad.py
    reads it (value / 255), or 0/255 when ``binary`` (road where P >= 0.5)."""
    prob = np.asarray(road_prob, dtype=np.float64)
    if prob.ndim != 2 or np.isnan(prob).any() or prob.min(initial=0) < 0 or prob.max(initial=0) > 1:
        raise ValueError(f"expected road probabilities (H, W) in [0, 1], got shape {prob.shape}")
    out = np.where(prob >= 0.5, 255, 0) if binary else np.rint(prob * 255.0)
    return save_png(out.astype(np.uint8), path, overwrite)


def output_name(image_name: str, meta: dict) -> str:
    """File name of the native-format result for an input image: KITTI ``um_000000.png`` -> ``um_road_000000.png``
    (devkit convention); Cityscapes keeps the ``<city>_<seq>_<frame>_...`` stem the official evaluation matches."""
    stem = Path(image_name).stem
    if meta["label_format"] == "kitti_road":
        category, _, number = stem.rpartition("_")
        return f"{category}_road_{number}.png"
    return f"{stem}.png"


def write_native(labels: np.ndarray, meta: dict, path: str | Path, road_prob: np.ndarray | None = None,
                 overwrite: bool = False) -> Path:
    """Write a prediction in the dataset's own format described by ``meta`` (from ``build_datasets``):
    Cityscapes label ids, CamVid/folder index values, or the KITTI road probability (``road_prob`` ``(H, W)``,
    or the binary ``labels`` when no probability is given)."""
    fmt = meta["label_format"]
    if fmt == "kitti_road":
        if road_prob is not None:
            return write_kitti_road(road_prob, path, overwrite=overwrite)
        return write_kitti_road((check_labels(labels) == 1).astype(np.float64), path, binary=True, overwrite=overwrite)
    if fmt == "index":
        return write_index_label(labels, meta["native_ids"], meta["native_void_id"], path, overwrite)
    raise ValueError(f"unknown label_format {fmt!r} in meta (accepted: 'index', 'kitti_road')")
