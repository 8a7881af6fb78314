"""Road-scene outputs in the formats the datasets' own tools read; always a folder ``OUT``, input subfolders kept::

    OUT/labels/<sub>/<name>.png     Cityscapes label ids, CamVid indices 0..10 (11 Void), class-map ids (folder
                                    layout), or KITTI road's devkit round(255 * P(road)) as CAT_road_NNNNNN.png
    OUT/color/<sub>/<stem>.png      class colours (an indexed-colour PNG: viewers show the colours; in Python
                                    ``Image.open(path).convert("RGB")``)
    OUT/overlay/<sub>/<stem>.png    the image blended with the class colours

``task=instance``, the Cityscapes instance format (category ids: the label PNGs' ids, ``category_ids``)::

    OUT/instances/<sub>/<stem>.txt               ``masks/<stem>_<id>.png <label id> <confidence>`` per instance
                                                 (confidence: mean softmax probability of its class)
    OUT/instances/<sub>/masks/<stem>_<id>.png    binary mask per instance (uint8, 255 = instance)
    OUT/instances/<sub>/<stem>_instanceIds.png   uint16 gtFine encoding: label id * 1000 + k, else the label id
    OUT/instances/<sub>/<stem>_instances.csv     id, class, label id, instanceIds value, confidence, pixels, box...

``task=panoptic``: ``OUT/panoptic/<sub>/<stem>_panoptic.png`` (COCO: id = R + 256 G + 256² B, 0 = void) and one
``OUT/panoptic.json`` (images, annotations, categories) for cityscapesscripts' evalPanopticSemanticLabeling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from segsuite.core.contracts import Item, Job, Mode, Prediction
from segsuite.core.domain import BaseSink, BaseWriter
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances import Instances, measure_instances
from segsuite.core.instances.panoptic import label_divisor_ids, panoptic_segments, rgb_from_ids
from segsuite.core.io import write_csv, write_json
from segsuite.core.overlay import overlay, write_colors, write_overlay_with_legend
from segsuite.core.png import save_png
from segsuite.core.workers import cores, side_pool

from .io import output_name, write_native
from .reader import OpenedFrame

SEMANTIC_FOLDERS = {"label": "labels", "color": "color", "overlay": "overlay"}
MODE_FILES = {  # kind -> (folder, suffix) of the files a task adds
    Mode.SEMANTIC: {},
    Mode.INSTANCE: {"instance_txt": ("instances", ".txt"), "instance_ids": ("instances", "_instanceIds.png"),
                    "instance_csv": ("instances", "_instances.csv")},
    Mode.PANOPTIC: {"panoptic": ("panoptic", "_panoptic.png")},
}
MASKS = "masks"  # subfolder of the instance masks, beside the .txt
PANOPTIC_JSON = "panoptic.json"
DIVISOR = 1000  # Cityscapes instanceIds: label id * 1000 + k
CSV_COLUMNS = ["id", "class", "label_id", "instance_id", "confidence", "pixels", "centroid_row", "centroid_col",
               "row0", "row1", "col0", "col1", "mask"]
_CITYSCAPES_SUFFIX = "_leftImg8bit"


def category_ids(meta: Any) -> list[int]:
    """Category id per class index: the native label ids for index-format data, else the class indices."""
    if meta["label_format"] == "index":
        return [int(i) for i in meta["native_ids"]]
    return list(range(len(meta["class_names"])))


def image_id(rel: Path) -> str:
    """COCO ``image_id`` of an input: Cityscapes ``<city>_<seq>_<frame>`` for ``*_leftImg8bit`` files (what the
    official evaluation matches), else the relative path without suffix."""
    if rel.stem.endswith(_CITYSCAPES_SUFFIX):
        return rel.stem[: -len(_CITYSCAPES_SUFFIX)]
    return rel.with_suffix("").as_posix()


def mask_stem(rel: Path) -> str:
    """Name prefix of an input's instance masks (spaces replaced: the official format splits lines on them)."""
    return rel.stem.replace(" ", "_")


def categories(meta: Any, thing_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO panoptic ``categories``: id, name, isthing, colour (and the Cityscapes category as supercategory)."""
    ids, cats = category_ids(meta), meta.get("categories")
    out = []
    for k, name in enumerate(meta["class_names"]):
        entry = {"id": ids[k], "name": name, "isthing": int(k in thing_ids), "color": list(meta["class_colors"][k])}
        if cats is not None:
            entry["supercategory"] = cats["names"][cats["class_to_category"][k]]
        out.append(entry)
    return out


class SceneWriter(BaseWriter):
    """Writes each frame's ``outputs`` (``label``, ``color``, ``overlay``; ``alpha``: overlay opacity of the colours;
    ``legend``: a strip naming the frame's classes below the overlay) and the instance or panoptic files of the task
    (module docstring)."""

    def __init__(self, outputs: Sequence[str] = ("label", "color", "overlay"), alpha: float = 0.5,
                 legend: bool = True) -> None:
        self.kinds = list(outputs)
        if not self.kinds or any(k not in SEMANTIC_FOLDERS for k in self.kinds):
            raise ConfigError(f"domain.writer.outputs={self.kinds}: choose one or more of {list(SEMANTIC_FOLDERS)}")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"domain.writer.alpha={alpha}: expected a value in [0, 1]")
        self.alpha, self.legend = alpha, legend
        # a frame's files side by side on every core: a frame is written whole once the engine has finished it, and
        # the pipeline waits for its sink before the next frame's forward pass, so nothing else needs the cores then
        self.pool = side_pool(cores(3), "road-write")

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if output.is_file():
            raise DataError(f"output {output} is a file; road-scene predict writes a folder")
        rel, meta = item.rel, job.model.meta
        paths = {kind: output / SEMANTIC_FOLDERS[kind] / rel.parent /
                 (output_name(rel.name, meta) if kind == "label" else f"{rel.stem}.png") for kind in self.kinds}
        for kind, (sub, suffix) in MODE_FILES[job.mode].items():
            paths[kind] = output / sub / rel.parent / f"{rel.stem}{suffix}"
        if job.mode is Mode.INSTANCE and not job.overwrite:
            _refuse_masks(paths["instance_txt"].parent / MASKS, rel)
        return paths

    def run_outputs(self, items: Sequence[Item], output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if job.mode is Mode.PANOPTIC:
            _refuse_shared_image_ids(items)
        if job.mode is Mode.INSTANCE:
            meta, ids = job.model.meta, category_ids(job.model.meta)
            bad = {meta.class_names[t]: ids[t] for t in job.instancer.thing_ids if not 0 < ids[t] <= 65}
            if bad:
                raise ConfigError(f"thing classes with label ids {bad}: the instanceIds encoding (label id * 1000 + k,"
                                  " 16 bits) needs label ids 1..65; give them other ids in the class map")
        return {"panoptic_json": output / PANOPTIC_JSON} if job.mode is Mode.PANOPTIC else {}

    def sink(self, item: Item, opened: OpenedFrame, paths: Mapping[str, Path], job: Job) -> FrameSink:
        return FrameSink(self, item.rel, opened.frame.rgb, paths, job)

    def finish(self, results: Sequence[Any], paths: Mapping[str, Path], job: Job) -> None:
        if job.mode is Mode.PANOPTIC:
            data = {"images": [r[0] for r in results], "annotations": [r[1] for r in results],
                    "categories": categories(job.model.meta, job.instancer.thing_ids)}
            write_json(paths["panoptic_json"], data, overwrite=False)


def _refuse_masks(folder: Path, rel: Path) -> None:
    """DataError if instance masks of ``rel`` exist already (their number is known only after inference)."""
    pattern = re.compile(re.escape(mask_stem(rel)) + r"_\d+\.png")
    found = sorted(p for p in folder.glob("*.png") if pattern.fullmatch(p.name)) if folder.is_dir() else []
    if found:
        raise DataError(f"instance masks of {rel} already exist (e.g. {found[0]}); pass overwrite=true to replace "
                        "them")


@dataclass
class FrameSink(BaseSink):
    """Writes one frame's files from its whole prediction (class map ``(H, W)``, probabilities, instances)."""

    writer: SceneWriter
    rel: Path
    rgb: np.ndarray
    paths: Mapping[str, Path]
    job: Job
    result: Any = None

    def _overlay(self, classes: np.ndarray, colors: list, path: Path) -> None:
        if self.writer.legend:
            meta = self.job.model.meta
            write_overlay_with_legend(self.rgb, classes, colors, list(meta.class_names), path, self.writer.alpha,
                                      meta.ignore_index)
        else:
            save_png(overlay(self.rgb, classes, colors, self.writer.alpha, self.job.model.meta.ignore_index), path)

    def update(self, p: Prediction) -> None:
        meta, paths, colors, mode = self.job.model.meta, self.paths, self.job.model.meta["class_colors"], self.job.mode
        road = p.probabilities[int(meta.get("road_class", 1))].cpu().numpy() \
            if meta["label_format"] == "kitti_road" and "label" in paths else None
        files = {"label": lambda: write_native(p.classes, meta, paths["label"], road_prob=road),
                 "color": lambda: write_colors(p.classes, colors, paths["color"], meta.ignore_index),
                 "overlay": lambda: self._overlay(p.classes, colors, paths["overlay"])}
        writes = [write for kind, write in files.items() if kind in paths]
        if mode is Mode.INSTANCE:
            confidence = p.probabilities.amax(0).float().cpu().numpy()
            writes.append(lambda: self._instances(p.classes, p.instances, confidence))
        elif mode is Mode.PANOPTIC:
            writes.append(lambda: self._panoptic(p.classes, p.instances))
        # encoded in the side pool (zlib releases the GIL), all finished when update returns
        futures = [self.writer.pool.submit(write) for write in writes]
        wait(futures)
        results = [future.result() for future in futures]  # raises the first error
        self.result = results[-1] if mode is Mode.PANOPTIC else None  # the frame's panoptic.json entries

    def _instances(self, labels: np.ndarray, instances: Instances, confidence: np.ndarray) -> None:
        meta, paths, things = self.job.model.meta, self.paths, self.job.instancer.thing_ids
        label_ids = category_ids(meta)
        ids = label_divisor_ids(labels, instances, things, label_ids, DIVISOR, ignore_index=meta.ignore_index)
        if ids.max(initial=0) > np.iinfo(np.uint16).max:
            raise DataError(f"frame {self.rel}: {instances.n} instances overflow the 16-bit instanceIds encoding")
        save_png(ids.astype(np.uint16), paths["instance_ids"])
        mean_conf = ndimage.mean(confidence, instances.ids, np.arange(1, instances.n + 1)) if instances.n else []
        rows, lines = [], []
        for row in measure_instances(instances, list(meta.class_names)):
            i = row["id"]
            box = (slice(row["row0"], row["row1"]), slice(row["col0"], row["col1"]))
            inside = instances.ids[box] == i
            binary = np.zeros(labels.shape, np.uint8)
            binary[box][inside] = 255
            mask = Path(MASKS) / f"{mask_stem(self.rel)}_{i:03d}.png"
            save_png(binary, paths["instance_txt"].parent / mask)  # beside the staged txt: committed with it
            label_id, confidence_i = label_ids[instances.classes[i]], float(mean_conf[i - 1])
            lines.append(f"{mask.as_posix()} {label_id} {confidence_i:.6f}\n")
            rows.append({**row, "label_id": label_id, "instance_id": int(ids[box][inside][0]),
                         "confidence": confidence_i, "mask": mask.as_posix()})
        paths["instance_txt"].write_text("".join(lines))
        write_csv(paths["instance_csv"], rows, overwrite=False, columns=CSV_COLUMNS)

    def _panoptic(self, labels: np.ndarray, instances: Instances) -> tuple[dict, dict]:
        meta = self.job.model.meta
        segments, info = panoptic_segments(labels, instances, self.job.instancer.thing_ids, category_ids(meta),
                                           meta.ignore_index)
        save_png(rgb_from_ids(segments), self.paths["panoptic"])
        name, (h, w) = image_id(self.rel), labels.shape
        file_name = (self.rel.parent / self.paths["panoptic"].name).as_posix()
        return ({"id": name, "file_name": self.rel.as_posix(), "height": h, "width": w},
                {"image_id": name, "file_name": file_name, "segments_info": info})

    def close(self) -> Any:
        return self.result



def _refuse_shared_image_ids(items: Sequence[Item]) -> None:
    """Two inputs whose files would share one ``image_id`` in the panoptic JSON: a DataError naming both."""
    seen: dict[str, Path] = {}
    for item in items:
        other = seen.setdefault(image_id(item.rel), item.rel)
        if other != item.rel:
            raise DataError(f"inputs {other} and {item.rel} would both be image_id {image_id(item.rel)!r} in "
                            f"{PANOPTIC_JSON}; predict them into separate outputs")
