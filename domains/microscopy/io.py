"""TIFFs in (3D stacks predicted slice by slice, cut into 3D objects); uint16 instance masks out, named as the CTC
results (``01/t000.tif`` -> ``OUT/01_RES/mask000.tif``), with an overlay PNG and a per-object CSV beside each."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.domain import BaseOpened, BaseReader, BaseSink, BaseWriter
from segsuite.core.errors import DataError
from segsuite.core.files import find_inputs
from segsuite.core.inference import ArraySource
from segsuite.core.instances import Instancer, Instances, measure_instances
from segsuite.core.io import write_csv
from segsuite.core.overlay import instance_overlay
from segsuite.core.png import save_png
from segsuite.core.preview import fit, stretch
from segsuite.domains.microscopy.data import SUFFIXES, normalize, read_tiff, synthetic_image, to_czyx, write_tiff

log = logging.getLogger(__name__)

SKIP = re.compile(r"\d+_(GT|ST|RES)|masks|labels")  # folders of truth or results inside an input folder


@dataclass
class OpenedStack(BaseOpened):
    """An image ``raw`` ``(C, Z, H, W)``: one source per z slice (normalised); logits come back ``(K, [Z,] H, W)``."""

    raw: np.ndarray
    pixel_um: float | None = None

    def __post_init__(self) -> None:
        self.sources = [ArraySource(z) for z in normalize(self.raw).transpose(1, 0, 2, 3)]

    def cell_size(self) -> tuple[float, str] | None:
        return (self.pixel_um**2, "µm²") if self.pixel_um and self.raw.shape[1] == 1 else None

    def values(self) -> dict[str, np.ndarray]:
        grid = self.raw[:, 0] if self.raw.shape[1] == 1 else self.raw  # the prediction's grid
        return {f"intensity_c{c}": band.astype(np.float32) for c, band in enumerate(grid)}


class TiffReader(BaseReader):
    """A TIFF, a folder (recursively, but not ``NN_GT|ST|RES``, ``masks``, ``labels``), a glob pattern or a list."""

    def find(self, input: Any, job: Job) -> list[Item]:
        found = find_inputs(input, SUFFIXES, "TIFF images (*.tif, *.tiff)", skip=SKIP.fullmatch)
        return [Item(str(rel) if rel else path.stem, path, rel or Path()) for path, rel in found]

    def check(self, item: Item, job: Job) -> None:  # the header only
        try:
            with tifffile.TiffFile(item.source) as tif:
                shape, axes = tif.series[0].shape, tif.series[0].axes
        except Exception as err:
            raise DataError(f"cannot read {item.source} as a TIFF: {err}") from None
        _check_channels(str(item.source), to_czyx(np.broadcast_to(np.uint8(0), shape), axes, item.source), job)

    def open(self, item: Item, job: Job) -> OpenedStack:
        raw, pixel = read_tiff(item.source)
        _check_channels(str(item.source), raw, job)
        return OpenedStack(raw, pixel)

    def from_array(self, array: np.ndarray, job: Job) -> OpenedStack:
        """Raw intensities ``(H, W)``, ``(C, H, W)`` or ``(C, Z, H, W)`` (any dtype), normalised per image."""
        if (array := np.asarray(array)).ndim not in (2, 3, 4):
            raise DataError(f"the array has shape {array.shape}; expected (H, W), (C, H, W) or (C, Z, H, W)")
        raw = array[None, None] if array.ndim == 2 else array[:, None] if array.ndim == 3 else array
        _check_channels("the array", raw, job)
        return OpenedStack(raw)

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """Two synthetic frames, written into ``folder`` once (the demo page's examples)."""
        for seed in (101, 102):
            if not (folder / f"nuclei_{seed}.tif").exists():
                image = np.repeat(synthetic_image(seed, 192)[0][None], job.model.meta.in_channels, 0)
                write_tiff(folder / f"nuclei_{seed}.tif", image if len(image) > 1 else image[0], 0.5)
        return [folder / f"nuclei_{seed}.tif" for seed in (101, 102)]

    def preview(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The image (every z slice for a stack) stretched to RGB on the result's grid (the demo page)."""
        try:
            raw = read_tiff(path)[0].astype(np.float32)
        except DataError:
            return None  # the prediction reports the file
        return fit(stretch(raw[:, 0] if len(shape) == 2 else raw), shape)


def _check_channels(name: str, raw: np.ndarray, job: Job) -> None:
    if raw.shape[0] != (channels := job.model.meta.in_channels):
        raise DataError(f"{name} has {raw.shape[0]} channel(s) (C, Z, H, W = {tuple(raw.shape)}); the model reads "
                        f"{channels}")


def cut_instances(prediction: Prediction, job: Job, min_size: int) -> Instances:
    """The job's nuclei (``task=instance``: split at the border), else connected components (touching ones merged)."""
    return prediction.instances if prediction.instances is not None else \
        Instancer(["nucleus"], job.model.meta.class_names, min_size, border="off")(prediction.classes)


def result_name(rel: Path) -> Path:
    """CTC result name: ``01/t000.tif`` -> ``01_RES/mask000.tif``; other names keep their stem (``.tif``)."""
    frame, parent = re.fullmatch(r"t(\d+)", rel.stem), rel.parent
    parent = parent.with_name(parent.name + "_RES") if frame and parent.name.isdigit() else parent
    return parent / (f"mask{frame[1]}.tif" if frame else rel.stem + ".tif")


@dataclass
class MaskWriter(BaseWriter):
    """Masks (uint16, 0 = none), ``<mask>_overlay.png``, ``<mask>_objects.csv``; ``pixel_size_um`` beats the tags."""

    overlay: bool = True
    objects: bool = True
    pixel_size_um: float | None = None
    min_size: int = 16

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if not folder and output.suffix and output.suffix.lower() not in SUFFIXES:
            raise DataError(f"output {output} must be a .tif file (the instance mask) or a folder (end it with /)")
        rel = item.rel if str(item.rel) not in ("", ".") else Path(item.name + ".tif")
        base = output / result_name(rel) if folder or not output.suffix else output  # a bare name is a folder
        paths = {"mask": base, "overlay": base.with_name(base.stem + "_overlay.png"),
                 "objects": base.with_name(base.stem + "_objects.csv")}
        return {kind: path for kind, path in paths.items() if kind == "mask" or getattr(self, kind)}

    def run_outputs(self, items: Sequence[Item], output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if job.instancer is None:  # no border channel (the core drops it for task=semantic)
            log.warning("task=semantic: touching nuclei are not split; use task=instance")
        return {}

    def sink(self, item: Item, opened: OpenedStack, paths: Mapping[str, Path], job: Job) -> MaskSink:
        return MaskSink(self, opened, paths, job)


@dataclass
class MaskSink(BaseSink):
    writer: MaskWriter
    opened: OpenedStack
    paths: Mapping[str, Path]
    job: Job
    prediction: Prediction | None = None

    def update(self, prediction: Prediction) -> None:
        self.prediction = prediction

    def close(self) -> Path:
        instances = cut_instances(self.prediction, self.job, self.writer.min_size)
        if instances.n > 65535:
            raise DataError(f"{instances.n} objects do not fit a uint16 mask ({self.paths['mask']})")
        tifffile.imwrite(self.paths["mask"], instances.ids.astype(np.uint16))
        if "overlay" in self.paths:
            save_png(overlay(self.opened.raw, instances.ids), self.paths["overlay"])
        if "objects" in self.paths:
            rows = object_rows(instances, self.opened, self.writer.pixel_size_um)
            write_csv(self.paths["objects"], rows, columns=list(rows[0]) if rows else ["id", "area_px"])
        return self.paths["mask"]


def overlay(raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: the image (middle z slice) stretched, objects in their colours, outlines white."""
    z = raw.shape[1] // 2
    return instance_overlay(stretch(raw[:, z].astype(np.float32)), ids[z] if ids.ndim == 3 else ids)


def object_rows(instances: Instances, opened: OpenedStack, pixel_um: float | None = None) -> list[dict[str, Any]]:
    """Per object: id, area (px; µm² with a pixel size; voxels in 3D), centroid, box, mean intensity per channel."""
    pixel = pixel_um or opened.pixel_um
    two_d = instances.ids.ndim == 2
    rows = measure_instances(instances, ["background", "nucleus"], (pixel, pixel) if pixel and two_d else None,
                             values=opened.values())
    names = {"pixels": "area_px", "area": "area_um2", "centroid_row": "centroid_y", "centroid_col": "centroid_x",
             "centroid_i": "centroid_z", "centroid_j": "centroid_y", "centroid_k": "centroid_x"}
    return [{names.get(k, k): v for k, v in row.items() if k != "class"} for row in rows]
