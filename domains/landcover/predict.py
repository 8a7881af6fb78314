"""Tiled GeoTIFF prediction: a scene (or a folder of scenes) in, a class-id GeoTIFF with the input's exact geometry
out, streamed row block by row block so memory is bounded by tile height x image width, not by image area.

Beside each output ``OUT.tif`` (all optional): ``OUT_proba.tif`` (per-class softmax, uint8: value / 254 is the
probability, 255 is nodata), ``OUT_areas.csv`` + ``OUT_areas.json`` (per-class area) and ``OUT_preview.png``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import ConfigError, DataError
from core.inference import TilePredictor, sliding_window
from core.instances import Instancer, StripLabeller, split_logits
from core.io import check_writable
from core.predict import output_channels
from domains.landcover.classes import ClassMap
from domains.landcover.dataset import IMAGE_SUFFIXES
from domains.landcover.inference import RasterSource
from domains.landcover.instances import InstanceStream, vector_driver
from domains.landcover.io import open_output
from domains.landcover.report import area_report, preview_png, write_area_report

log = logging.getLogger(__name__)

PROBA_SCALE = 254  # probability p is stored as round(254 p) in uint8; 255 is nodata
NODATA = 255


@dataclass(frozen=True)
class Job:
    """One input scene and every file it will produce (None: not asked for)."""

    input: Path
    output: Path
    proba: Path | None
    areas_csv: Path | None
    areas_json: Path | None
    preview: Path | None
    instances: Path | None = None  # task=instance|panoptic: OUT_instances.tif, .gpkg (or .geojson), .csv
    polygons: Path | None = None
    table: Path | None = None
    panoptic: Path | None = None  # task=panoptic: OUT_panoptic.tif

    @property
    def outputs(self) -> list[Path]:
        paths = (self.output, self.proba, self.areas_csv, self.areas_json, self.preview, self.instances, self.polygons,
                 self.table, self.panoptic)
        return [p for p in paths if p]


def _beside(output: Path, suffix: str) -> Path:
    """``OUT.tif`` -> ``OUT<suffix>``, e.g. ``OUT_areas.csv``."""
    return output.with_name(output.stem + suffix)


def _input_files(input: Path) -> list[Path]:
    if input.is_dir():
        files = sorted(p for p in input.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"no GeoTIFFs (*.tif, *.tiff) in input folder {input}")
        return files
    if not input.exists():
        raise DataError(f"input {input} does not exist (a GeoTIFF or a folder of them is expected)")
    return [input]


def plan(input: str | Path, output: str | Path, probabilities: bool = False, report: bool = True,
         preview: bool = True, mode: str = "semantic", vector_format: str = "gpkg") -> list[Job]:
    """Jobs for ``input`` (a GeoTIFF, or a folder whose GeoTIFFs go to the folder ``output`` under their names;
    a single input with an existing folder as ``output`` goes into it under its name)."""
    src, dst = Path(input), Path(output)
    files = _input_files(src)
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise DataError(f"input {src} is a folder, so output {dst} must be a folder, but it is a file")
        outputs = [dst / f.name for f in files]
    else:
        outputs = [dst / src.name if dst.is_dir() else dst]
    jobs = []
    for f, out in zip(files, outputs):
        if out.resolve() == f.resolve():
            raise DataError(f"output {out} is the input itself; choose another output path")
        jobs.append(Job(
            input=f, output=out,
            proba=_beside(out, "_proba.tif") if probabilities else None,
            areas_csv=_beside(out, "_areas.csv") if report else None,
            areas_json=_beside(out, "_areas.json") if report else None,
            preview=_beside(out, "_preview.png") if preview else None,
            **(_instance_outputs(out, mode, vector_format)),
        ))
    return jobs


def _instance_outputs(output: Path, mode: str, vector_format: str) -> dict[str, Path]:
    if mode == "semantic":
        return {}
    polygons = _beside(output, f"_instances.{vector_format.lower().lstrip('.')}")
    vector_driver(polygons)  # ConfigError for an unknown format
    paths = {"instances": _beside(output, "_instances.tif"), "polygons": polygons,
             "table": _beside(output, "_instances.csv")}
    if mode == "panoptic":
        paths["panoptic"] = _beside(output, "_panoptic.tif")
    return paths


def check_input(path: Path, meta: dict[str, Any]) -> None:
    """Fail (DataError) unless ``path`` opens as a GeoTIFF with a CRS, the checkpoint's band count, and some
    valid (not nodata) pixel."""
    with RasterSource(path, meta) as source:
        if not source.any_valid():
            raise DataError(f"{path}: every pixel is nodata; nothing to predict")


def _blocksize(shape: Sequence[int], largest: int = 512) -> int:
    """Output tile size: ``largest``, or the image's longer side rounded up to 16 px if smaller."""
    return min(largest, 16 * math.ceil(max(shape) / 16))


def rgb_bands(meta: dict[str, Any]) -> list[int] | None:
    """1-based bands named red, green, blue in the checkpoint's ``meta`` (for the preview), else None."""
    names = [str(n).lower() for n in meta.get("band_names", [])]
    if not {"red", "green", "blue"} <= set(names):
        return None
    return [int(meta["bands"][names.index(c)]) for c in ("red", "green", "blue")]


def predict_raster(predictor: TilePredictor, source: RasterSource, output: Path, class_map: ClassMap,
                   proba: Path | None = None, overwrite: bool = False, tile: Sequence[int] = (512, 512),
                   overlap: Sequence[int] = (64, 64), batch_size: int = 8, blend: str = "gaussian", cog: bool = False,
                   progress: bool | str = True, instances: InstanceStream | None = None,
                   channels: int | None = None) -> list[Path]:
    """Stream ``source`` through ``sliding_window`` into a class-id GeoTIFF ``output`` (uint8, colour table,
    nodata 255 where the input is nodata) and optionally the per-class probability GeoTIFF ``proba``.

    Both keep the input's CRS, transform and size; they are written to temp files renamed on success, and
    removed on any error. With ``instances`` (an ``InstanceStream``) the class strips are also cut into instances,
    with the border channel when the predictor returns ``channels = K + 1``. Returns the paths written.
    """
    k = len(class_map)
    channels = channels or k
    common = dict(like=source.profile, nodata=NODATA, overwrite=overwrite, cog=cog,
                  blocksize=_blocksize(source.shape))
    with ExitStack() as stack:
        classes = stack.enter_context(open_output(output, colormap=class_map.colormap(), **common))
        probs = None
        if proba:
            probs = stack.enter_context(open_output(proba, count=k, descriptions=class_map.names, **common))
        for _, row0, logits, covered in sliding_window(predictor, [source], channels, tuple(tile), tuple(overlap),
                                                       batch_size, blend, progress):
            valid = source.valid_rows(row0, logits.shape[1]) & covered.cpu().numpy()  # (n, W)
            semantic, border = split_logits(logits, k)  # (n, W) uint8, border probability or None
            classes.write_rows(row0, semantic, valid)
            if instances is not None:
                instances.push(row0, np.where(valid, semantic, NODATA), border)
            logits = logits[:k]
            if probs is not None:
                scaled = (logits.softmax(0) * PROBA_SCALE).round_().to(torch.uint8)  # (K, n, W)
                probs.write_rows(row0, scaled.cpu().numpy(), valid)
    return [output] + ([proba] if proba else [])


def predict(task: Any, predictor: TilePredictor, input: str, output: str, overwrite: bool = False,
            tile: Sequence[int] = (512, 512), overlap: Sequence[int] = (64, 64), batch_size: int = 8,
            blend: str = "gaussian", cog: bool = False, probabilities: bool = False, report: bool = True,
            preview: bool = True, mode: str = "semantic", instancer: Instancer | None = None,
            vector_format: str = "gpkg") -> list[Path]:
    """Predict a GeoTIFF (or a folder of them) with a trained land-cover model; see the module docstring.

    Every input and output is checked before any work: the input opens, is not truncated, has a CRS, the
    checkpoint's band count and some valid pixel; each output is absent (unless ``overwrite``) and writable.
    Returns every path written.
    """
    meta = dict(task.hparams.data_meta)
    class_map = ClassMap.from_meta(meta)
    if len(class_map) >= NODATA:
        raise ConfigError(f"{len(class_map)} classes do not fit a uint8 class raster with nodata {NODATA}")
    jobs = plan(input, output, probabilities, report, preview, mode, vector_format)
    for job in jobs:
        check_input(job.input, meta)
    for job in jobs:
        for path in job.outputs:
            check_writable(path, overwrite)
    written: list[Path] = []
    for job in jobs:
        with RasterSource(job.input, meta) as source:
            stream = None
            if instancer is not None:
                stream = InstanceStream(StripLabeller(instancer, source.shape[1]), source.profile, job.instances,
                                        job.polygons, job.table, class_map.names, job.panoptic, overwrite)
            try:
                written += predict_raster(predictor, source, job.output, class_map, job.proba, overwrite, tile,
                                          overlap, batch_size, blend, cog, progress=f"predict {job.input.name}",
                                          instances=stream,
                                          channels=output_channels(task, instancer) if instancer else None)
            except BaseException:
                if stream is not None:
                    stream.abort()
                raise
        if stream is not None:
            written += stream.finish(job.output)
        if report:
            areas = area_report(job.output, class_map)
            write_area_report(areas, job.areas_csv, job.areas_json, overwrite)
            written += [job.areas_csv, job.areas_json]
            if areas["note"]:
                log.warning("%s: %s", job.input.name, areas["note"])
        if preview:
            written.append(preview_png(job.input, job.output, job.preview, class_map, rgb_bands(meta),
                                       overwrite=overwrite))
        log.info("%s -> %s", job.input, job.output)
    return written
