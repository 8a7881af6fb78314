"""Instance and panoptic outputs of a road-scene prediction, in the formats the Cityscapes tools read.

Category ids are the ids the semantic label PNGs hold (``meta["native_ids"]``): official Cityscapes label ids
(car = 26), CamVid indices, class-map ids (folder layout); class indices for KITTI road.

Per frame ``<stem>`` (input subfolders ``<sub>`` kept), with ``task=instance``::

    OUT/instances/<sub>/<stem>.txt               cityscapesscripts' instance format: one line per instance,
                                                 ``masks/<stem>_<id>.png <label id> <confidence>``; confidence is
                                                 the mean softmax probability of the instance's class over it
    OUT/instances/<sub>/masks/<stem>_<id>.png    binary mask per instance (uint8, 255 = instance)
    OUT/instances/<sub>/<stem>_instanceIds.png   uint16, the gtFine encoding: label id * 1000 + k for instance k
                                                 of its class (k = 0, 1, ...), the label id elsewhere, 0 on void
    OUT/instances/<sub>/<stem>_instances.csv     per instance: id (as in the mask names), class, label id, value
                                                 in _instanceIds.png, confidence, pixels, centroid, box

with ``task=panoptic``::

    OUT/panoptic/<sub>/<stem>_panoptic.png       COCO panoptic PNG (segment id = R + 256 G + 256² B, 0 = void)
    OUT/panoptic.json                            COCO panoptic: images, annotations (image_id, file_name relative
                                                 to OUT/panoptic, segments_info), categories (id, name, isthing,
                                                 color); what cityscapesscripts' evalPanopticSemanticLabeling reads
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from core.errors import ConfigError, DataError
from core.instances import Instancer, Instances, measure_instances
from core.instances.panoptic import label_divisor_ids, panoptic_segments, rgb_from_ids
from core.io import write_csv, write_json
from core.predict import MODES

from .io import save_png

MODE_KINDS = {"semantic": (), "instance": ("instance_txt", "instance_ids", "instance_csv"), "panoptic": ("panoptic",)}
KIND_FOLDERS = {"instance_txt": "instances", "instance_ids": "instances", "instance_csv": "instances",
                "panoptic": "panoptic"}
KIND_SUFFIXES = {"instance_txt": ".txt", "instance_ids": "_instanceIds.png", "instance_csv": "_instances.csv",
                 "panoptic": "_panoptic.png"}
MASKS = "masks"  # subfolder of the instance masks, beside the .txt
PANOPTIC_JSON = "panoptic.json"
DIVISOR = 1000  # Cityscapes instanceIds: label id * 1000 + k
CSV_COLUMNS = ["id", "class", "label_id", "instance_id", "confidence", "pixels", "centroid_row", "centroid_col",
               "row0", "row1", "col0", "col1", "mask"]
_CITYSCAPES_SUFFIX = "_leftImg8bit"


def category_ids(meta: dict[str, Any]) -> list[int]:
    """Category id per class index: the native label ids for index-format data, else the class indices."""
    if meta["label_format"] == "index":
        return [int(i) for i in meta["native_ids"]]
    return list(range(len(meta["class_names"])))


def check_mode(mode: str, instancer: Instancer | None, meta: dict[str, Any]) -> None:
    """Before any work: ``mode`` is known, comes with an instancer for the model's classes, and (instance mode) every
    thing class has a label id the 16-bit instanceIds encoding can carry."""
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
    if mode == "semantic":
        return
    if instancer is None:
        raise ConfigError(f"mode={mode} needs an instancer (the thing classes to cut into instances)")
    if list(instancer.class_names) != list(meta["class_names"]):
        raise ConfigError(f"the instancer's classes {instancer.class_names} are not the model's "
                          f"{meta['class_names']}")
    if mode == "instance":
        ids = category_ids(meta)
        bad = {meta["class_names"][t]: ids[t] for t in instancer.thing_ids if not 0 < ids[t] <= 65}
        if bad:
            raise ConfigError(f"thing classes with label ids {bad}: the instanceIds encoding (label id * 1000 + k, "
                              "16 bits) needs label ids 1..65; give them other ids in the class map")


def image_id(rel: Path) -> str:
    """COCO ``image_id`` of an input (path relative to the input): Cityscapes ``<city>_<seq>_<frame>`` for
    ``*_leftImg8bit`` files (what the official evaluation matches), else the relative path without suffix."""
    if rel.stem.endswith(_CITYSCAPES_SUFFIX):
        return rel.stem[: -len(_CITYSCAPES_SUFFIX)]
    return rel.with_suffix("").as_posix()


def check_image_ids(rels: Sequence[Path]) -> None:
    """DataError when two inputs would share a COCO ``image_id`` (Cityscapes frames of one name in two folders)."""
    seen: dict[str, Path] = {}
    for rel in rels:
        other = seen.setdefault(image_id(rel), rel)
        if other != rel:
            raise DataError(f"inputs {other} and {rel} would both be image_id {image_id(rel)!r} in panoptic.json; "
                            "predict them into separate outputs")


def kind_path(kind: str, rel: Path) -> Path:
    """Output file of ``kind`` for the input ``rel``, relative to the output folder."""
    return Path(KIND_FOLDERS[kind]) / rel.parent / f"{rel.stem}{KIND_SUFFIXES[kind]}"


def mask_stem(rel: Path) -> str:
    """Name prefix of an input's instance masks (spaces replaced: the official format splits lines on them)."""
    return rel.stem.replace(" ", "_")


def categories(meta: dict[str, Any], thing_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO panoptic ``categories``: per class its category id, name, isthing, colour (and the Cityscapes category as
    ``supercategory``)."""
    ids, cats = category_ids(meta), meta.get("categories")
    out = []
    for k, name in enumerate(meta["class_names"]):
        entry = {"id": ids[k], "name": name, "isthing": int(k in thing_ids), "color": list(meta["class_colors"][k])}
        if cats is not None:
            entry["supercategory"] = cats["names"][cats["class_to_category"][k]]
        out.append(entry)
    return out


@dataclass
class FrameOutputs:
    """What writing one frame's instance/panoptic files produced: the mask files (instance mode) and the COCO
    ``images`` and ``annotations`` entries (panoptic mode)."""

    masks: list[Path] = field(default_factory=list)
    image: dict[str, Any] | None = None
    annotation: dict[str, Any] | None = None


class InstanceWriter:
    """Cuts the instances of a frame's full-resolution class map and writes its instance or panoptic files.

    Args:
        mode: ``instance`` or ``panoptic``.
        instancer: the thing classes and how to cut them (see ``core.instances.Instancer``).
        meta: the checkpoint's data meta (class names, colours, label ids, ignore index).
    """

    def __init__(self, mode: str, instancer: Instancer, meta: dict[str, Any]) -> None:
        check_mode(mode, instancer, meta)
        self.mode, self.instancer, self.meta = mode, instancer, meta
        self.category_ids = category_ids(meta)
        self.ignore_index = int(meta.get("ignore_index", 255))

    def write(self, labels: np.ndarray, border_prob: np.ndarray | None, confidence: np.ndarray | None,
              plan: dict[str, Path], rel: Path, stage: Path) -> FrameOutputs:
        """Cut instances of ``labels`` ``(H, W)`` (split by ``border_prob`` ``(H, W)`` when given) and write the
        files of ``plan`` under ``stage``; ``confidence`` ``(H, W)``: softmax probability of the predicted class."""
        instances = self.instancer(labels, border_prob)
        if self.mode == "instance":
            return self._write_instances(labels, instances, confidence, plan, rel, stage)
        return self._write_panoptic(labels, instances, plan, rel, stage)

    def _write_instances(self, labels: np.ndarray, instances: Instances, confidence: np.ndarray | None,
                         plan: dict[str, Path], rel: Path, stage: Path) -> FrameOutputs:
        if confidence is None:
            raise ValueError("instance outputs need the confidence map (infer(..., confidence=True))")
        ids = label_divisor_ids(labels, instances, self.instancer.thing_ids, self.category_ids, DIVISOR,
                                ignore_index=self.ignore_index)
        if ids.max(initial=0) > np.iinfo(np.uint16).max:
            raise DataError(f"frame {rel}: {instances.n} instances overflow the 16-bit instanceIds encoding")
        save_png(ids.astype(np.uint16), stage / plan["instance_ids"])
        index = np.arange(1, instances.n + 1)
        mean_conf = ndimage.mean(confidence, instances.ids, index) if instances.n else np.zeros(0)
        folder = stage / plan["instance_txt"].parent
        rows, lines, masks = [], [], []
        for row in measure_instances(instances, self.instancer.class_names):
            i = row["id"]
            box = (slice(row["row0"], row["row1"]), slice(row["col0"], row["col1"]))
            inside = instances.ids[box] == i
            binary = np.zeros(labels.shape, np.uint8)
            binary[box][inside] = 255
            mask = Path(MASKS) / f"{mask_stem(rel)}_{i:03d}.png"
            save_png(binary, folder / mask)
            masks.append(plan["instance_txt"].parent / mask)
            label_id = self.category_ids[instances.classes[i]]
            code = int(ids[box][inside][0])
            lines.append(f"{mask.as_posix()} {label_id} {mean_conf[i - 1]:.6f}\n")
            rows.append({**row, "label_id": label_id, "instance_id": code, "confidence": float(mean_conf[i - 1]),
                         "mask": mask.as_posix()})
        _write_text(stage / plan["instance_txt"], "".join(lines))
        write_csv(stage / plan["instance_csv"], rows, overwrite=False, columns=CSV_COLUMNS)
        return FrameOutputs(masks=masks)

    def _write_panoptic(self, labels: np.ndarray, instances: Instances, plan: dict[str, Path], rel: Path,
                        stage: Path) -> FrameOutputs:
        segments, info = panoptic_segments(labels, instances, self.instancer.thing_ids, self.category_ids,
                                           self.ignore_index)
        save_png(rgb_from_ids(segments), stage / plan["panoptic"])
        name = image_id(rel)
        h, w = labels.shape
        file_name = plan["panoptic"].relative_to(KIND_FOLDERS["panoptic"]).as_posix()
        return FrameOutputs(image={"id": name, "file_name": rel.as_posix(), "height": h, "width": w},
                            annotation={"image_id": name, "file_name": file_name, "segments_info": info})

    def write_json(self, frames: Sequence[FrameOutputs], stage: Path) -> Path:
        """``panoptic.json`` under ``stage`` for all frames (panoptic mode)."""
        data = {"images": [f.image for f in frames], "annotations": [f.annotation for f in frames],
                "categories": categories(self.meta, self.instancer.thing_ids)}
        return write_json(stage / PANOPTIC_JSON, data, overwrite=False)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (a new file in the staging folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
