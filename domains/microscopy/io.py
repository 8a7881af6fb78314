"""Microscopy I/O: TIFFs in (2D, or 3D stacks predicted slice by slice, then cut into 3D objects), instance masks out as
the Cell Tracking Challenge names its results (``01/t000.tif`` -> ``OUT/01_RES/mask000.tif``, uint16), with an
overlay PNG and a per-object CSV beside each mask."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.errors import DataError
from segsuite.core.inference import ArraySource
from segsuite.core.instances import Instancer, Instances, measure_instances
from segsuite.core.io import pattern_matches, write_csv
from segsuite.core.overlay import instance_colors, instance_edges
from segsuite.core.png import save_png
from segsuite.core.preview import stretch
from segsuite.domains.microscopy.data import SUFFIXES, normalize, read_tiff, synthetic_image, to_czyx, write_tiff

log = logging.getLogger(__name__)

SKIP = re.compile(r"\d+_(GT|ST|RES)|masks|labels")  # folders of truth or results inside an input folder


@dataclass
class OpenedStack:
    """An image ``(C, Z, H, W)``: one source per z slice (normalised); logits come back ``(K, H, W)`` or
    ``(K, Z, H, W)``."""

    raw: np.ndarray
    pixel_um: float | None = None
    streaming: bool = False

    def __post_init__(self) -> None:
        self.sources = [ArraySource(z) for z in normalize(self.raw).transpose(1, 0, 2, 3)]

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def close(self) -> None:
        pass

    def cell_size(self) -> tuple[float, str] | None:
        return (self.pixel_um**2, "µm²") if self.pixel_um and self.raw.shape[1] == 1 else None

    def values(self) -> dict[str, np.ndarray]:
        grid = self.raw[:, 0] if self.raw.shape[1] == 1 else self.raw  # the prediction's grid
        return {f"intensity_c{c}": band.astype(np.float32) for c, band in enumerate(grid)}


class TiffReader:
    """A TIFF, a folder of them (searched recursively, skipping ``NN_GT``, ``NN_ST``, ``NN_RES``, ``masks`` and
    ``labels``), a glob pattern or a list of these."""

    def find(self, input: Any, job: Job) -> list[Item]:
        if isinstance(input, (list, tuple)):
            return [item for entry in input for item in self.find(entry, job)]
        if (matches := pattern_matches(input)) is not None:
            return [item for path in matches for item in self.find(path, job)]
        src = Path(str(input))
        if src.is_dir():
            files = [p for p in sorted(src.rglob("*")) if p.is_file() and p.suffix.lower() in SUFFIXES
                     and not any(SKIP.fullmatch(part) for part in p.relative_to(src).parts[:-1])]
            if not files:
                raise DataError(f"no TIFF images (*.tif, *.tiff) in input folder {src}")
            return [Item(str(p.relative_to(src)), p, p.relative_to(src)) for p in files]
        if not src.is_file() or src.suffix.lower() not in SUFFIXES:
            raise DataError(f"input {src} is not a TIFF file (*.tif, *.tiff) or a folder of them")
        return [Item(src.stem, src)]

    def check(self, item: Item, job: Job) -> None:
        try:
            with tifffile.TiffFile(item.source) as tif:
                shape, axes = tif.series[0].shape, tif.series[0].axes
        except Exception as err:
            raise DataError(f"cannot read {item.source} as a TIFF: {err}") from None
        dummy = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, [0] * len(shape))
        _check_channels(str(item.source), to_czyx(dummy, axes, item.source), job)

    def open(self, item: Item, job: Job) -> OpenedStack:
        raw, pixel = read_tiff(item.source)
        _check_channels(str(item.source), raw, job)
        return OpenedStack(raw, pixel)

    def from_array(self, array: np.ndarray, job: Job) -> OpenedStack:
        """Raw intensities ``(H, W)``, ``(C, H, W)`` or ``(C, Z, H, W)`` (any dtype), normalised per image."""
        array = np.asarray(array)
        if array.ndim not in (2, 3, 4):
            raise DataError(f"the array has shape {array.shape}; expected (H, W), (C, H, W) or (C, Z, H, W)")
        raw = array.reshape((1,) * (4 - array.ndim) + array.shape) if array.ndim < 4 else array
        raw = raw.transpose(1, 0, 2, 3) if array.ndim == 3 else raw  # (1, C, H, W) -> (C, 1, H, W)
        _check_channels("the array", raw, job)
        return OpenedStack(raw)

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """Two synthetic frames, written into ``folder`` once (the demo page's examples)."""
        paths = []
        for seed in (101, 102):
            path = folder / f"nuclei_{seed}.tif"
            if not path.exists():
                image = synthetic_image(seed, 192)[0]
                write_tiff(path, np.repeat(image[None], job.model.meta.in_channels, 0).squeeze(), 0.5)
            paths.append(path)
        return paths


def _check_channels(name: str, raw: np.ndarray, job: Job) -> None:
    channels = job.model.meta.in_channels
    if raw.shape[0] != channels:
        raise DataError(f"{name} has {raw.shape[0]} channel(s) (shape C, Z, H, W = {tuple(raw.shape)}); the model "
                        f"reads {channels}")


def cut_instances(prediction: Prediction, job: Job, min_size: int) -> Instances:
    """The prediction's nuclei: the job's (``task=instance``, split at the border channel), else connected
    components of the nucleus class (``task=semantic``: touching nuclei stay merged)."""
    if prediction.instances is not None:
        return prediction.instances
    return Instancer(["nucleus"], job.model.meta.class_names, min_size, border="off")(prediction.classes)


def result_name(rel: Path) -> Path:
    """CTC result name: ``01/t000.tif`` -> ``01_RES/mask000.tif``; other names keep their stem (``.tif``)."""
    frame = re.fullmatch(r"t(\d+)", rel.stem)
    parent = rel.parent
    if frame and parent.name.isdigit():
        parent = parent.with_name(parent.name + "_RES")
    return parent / (f"mask{frame[1]}.tif" if frame else rel.stem + ".tif")


@dataclass
class MaskWriter:
    """Instance masks (uint16 TIFF, 0 background); ``overlay`` and ``objects`` add ``<mask>_overlay.png`` and
    ``<mask>_objects.csv``; ``pixel_size_um`` overrides the files' resolution tags."""

    overlay: bool = True
    objects: bool = True
    pixel_size_um: float | None = None
    min_size: int = 16

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if folder or not output.suffix:  # a bare name is a folder
            base = output / result_name(item.rel if str(item.rel) not in ("", ".") else Path(item.name + ".tif"))
        elif output.suffix.lower() not in SUFFIXES:
            raise DataError(f"output {output} must be a .tif file (the instance mask) or a folder (end it with /)")
        else:
            base = output
        paths = {"mask": base}
        if self.overlay:
            paths["overlay"] = base.with_name(base.stem + "_overlay.png")
        if self.objects:
            paths["objects"] = base.with_name(base.stem + "_objects.csv")
        return paths

    def run_outputs(self, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        return {}

    def sink(self, item: Item, opened: OpenedStack, paths: Mapping[str, Path], job: Job) -> MaskSink:
        if job.instancer is None:
            log.warning("task=semantic: touching nuclei are not split; use task=instance")
        return MaskSink(self, opened, paths, job)

    def finish(self, results: Sequence[Any], paths: Mapping[str, Path], job: Job) -> None:
        pass


@dataclass
class MaskSink:
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

    def abort(self) -> None:
        pass


def overlay(raw: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: the image (its middle z slice) stretched to grey or RGB, each object blended in a
    colour, object outlines white."""
    z = raw.shape[1] // 2
    ids = ids[z] if ids.ndim == 3 else ids
    rgb, colours, inside = stretch(raw[:, z].astype(np.float32)), instance_colors(ids), ids > 0
    rgb[inside] = np.rint((1 - alpha) * rgb[inside] + alpha * colours[inside])
    rgb[instance_edges(ids)] = 255
    return rgb


def object_rows(instances: Instances, opened: OpenedStack, pixel_um: float | None = None) -> list[dict[str, Any]]:
    """Per object: id, area (px, and µm² when the pixel size is known; voxels in 3D), centroid (z,) y, x, bounding
    box and mean raw intensity per channel."""
    pixel = pixel_um or opened.pixel_um
    two_d = instances.ids.ndim == 2
    rows = measure_instances(instances, ["background", "nucleus"], (pixel, pixel) if pixel and two_d else None,
                             values=opened.values())
    names = {"pixels": "area_px", "area": "area_um2", "centroid_row": "centroid_y", "centroid_col": "centroid_x",
             "centroid_i": "centroid_z", "centroid_j": "centroid_y", "centroid_k": "centroid_x"}
    return [{names.get(k, k): v for k, v in row.items() if k != "class"} for row in rows]
