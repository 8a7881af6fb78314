"""Land-cover outputs of one scene ``OUT.tif``: the class ids (uint8, colour table, nodata 255 where the input is
nodata, the input's exact CRS, transform and size), streamed row block by row block, and beside it (all optional)
``OUT_proba.tif`` (per-class softmax as uint8: value / 254, 255 nodata), ``OUT_areas.csv`` + ``OUT_areas.json``
(per-class area), ``OUT_preview.png``; with task=instance|panoptic the outputs of
:mod:`segsuite.domains.landcover.instances`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.contracts import Item, Job, Mode, Prediction
from segsuite.core.domain import BaseWriter
from segsuite.core.errors import ConfigError
from segsuite.core.instances import StripLabeller
from segsuite.domains.landcover.classes import ClassMap
from segsuite.domains.landcover.instances import InstanceStream, vector_driver
from segsuite.domains.landcover.io import as_location, is_remote, location_name
from segsuite.domains.landcover.rasterout import RasterWriter
from segsuite.domains.landcover.reader import OpenedScene
from segsuite.domains.landcover.report import area_report, preview_png, write_area_report

log = logging.getLogger(__name__)

PROBA_SCALE = 254  # probability p is stored as round(254 p) in uint8; 255 is nodata
NODATA = 255


def beside(output: Path, suffix: str) -> Path:
    """``OUT.tif`` -> ``OUT<suffix>``, e.g. ``OUT_areas.csv``."""
    return output.with_name(output.stem + suffix)


def rgb_bands(meta: Any) -> list[int] | None:
    """1-based bands named red, green, blue in the checkpoint's ``meta`` (for the preview), else None."""
    names = [str(n).lower() for n in meta.get("band_names") or []]
    if not {"red", "green", "blue"} <= set(names):
        return None
    return [int(meta["bands"][names.index(c)]) for c in ("red", "green", "blue")]


@dataclass
class GeoTiffWriter(BaseWriter):
    """Writes ``OUT.tif`` and the files beside it (see the module docstring); ``cog``: Cloud-Optimized GeoTIFFs,
    ``vector_format``: gpkg or geojson polygons (task=instance|panoptic)."""

    cog: bool = False
    probabilities: bool = False
    report: bool = True
    preview: bool = True
    vector_format: str = "gpkg"

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if job.model.num_classes >= NODATA:
            raise ConfigError(f"{job.model.num_classes} classes do not fit a uint8 class raster with nodata {NODATA}")
        if is_remote(output):
            raise ConfigError(f"output {as_location(output)}: writing to a URL or GDAL /vsi path is not supported; "
                              "give a local file or folder (and copy the results up afterwards)")
        main = output / (item.rel if item.rel.name else location_name(item.source)) if folder else output
        if folder and main.suffix.lower() not in (".tif", ".tiff"):  # a VRT input writes a GeoTIFF
            main = main.with_suffix(".tif")
        paths = {"classes": main}
        if self.probabilities:
            paths["proba"] = beside(main, "_proba.tif")
        if self.report:
            paths |= {"areas_csv": beside(main, "_areas.csv"), "areas_json": beside(main, "_areas.json")}
        if self.preview:
            paths["preview"] = beside(main, "_preview.png")
        if job.mode is not Mode.SEMANTIC:
            paths |= {"instances": beside(main, "_instances.tif"),
                      "polygons": beside(main, f"_instances.{self.vector_format.lower().lstrip('.')}"),
                      "table": beside(main, "_instances.csv")}
            vector_driver(paths["polygons"])  # ConfigError for an unknown format
        if job.mode is Mode.PANOPTIC:
            paths["panoptic"] = beside(main, "_panoptic.tif")
        return paths

    def sink(self, item: Item, opened: OpenedScene, paths: Mapping[str, Path], job: Job) -> RasterSink:
        return RasterSink(item, opened, dict(paths), job, self.cog, paths.final["classes"])


def _blocksize(shape: Sequence[int], largest: int = 512) -> int:
    """Output tile size: ``largest``, or the image's longer side rounded up to 16 px if smaller."""
    return min(largest, 16 * math.ceil(max(shape) / 16))


class RasterSink:
    """Streams the blocks of one scene (rows, or rectangles of column bands) into its rasters (and instance stream);
    the reports follow on close."""

    def __init__(self, item: Item, opened: OpenedScene, paths: dict[str, Path], job: Job, cog: bool,
                 destination: Path) -> None:
        self.item, self.opened, self.paths, self.destination = item, opened, paths, destination
        self.meta, self.class_map = job.model.meta, ClassMap.from_meta(job.model.meta)
        source = opened.sources[0]
        common = dict(like=source.profile, nodata=NODATA, cog=cog, blocksize=_blocksize(source.shape))
        self.classes = RasterWriter(paths["classes"], colormap=self.class_map.colormap(), categorical=True, **common)
        self.proba = None
        if "proba" in paths:
            self.proba = RasterWriter(paths["proba"], count=len(self.class_map), descriptions=self.class_map.names,
                                     **common)
        self.instances = None
        if job.instancer is not None:
            self.instances = InstanceStream(StripLabeller(job.instancer, source.shape[1]), source.profile, paths,
                                            self.class_map.names)

    def update(self, p: Prediction) -> None:
        valid = self.opened.valid(p)  # (n, w)
        self.classes.write_block(p.row0, p.col0, p.classes, valid)
        if self.instances is not None:
            self.instances.push(p.row0, np.where(valid, p.classes, NODATA), p.border, p.col0)
        if self.proba is not None:
            scaled = (p.probabilities * PROBA_SCALE).round_().to(torch.uint8)  # (K, n, w)
            self.proba.write_block(p.row0, p.col0, scaled.cpu().numpy(), valid)

    def close(self) -> list[Path]:
        classes = self.classes.close()
        if self.proba is not None:
            self.proba.close()
        if self.instances is not None:
            self.instances.finish(classes)
        if "areas_csv" in self.paths:
            areas = area_report(classes, self.class_map, name=self.destination)
            write_area_report(areas, self.paths["areas_csv"], self.paths["areas_json"])
            if areas["note"]:
                log.warning("%s: %s", self.item.name, areas["note"])
        if "preview" in self.paths:
            preview_png(self.item.source, classes, self.paths["preview"], self.class_map, rgb_bands(self.meta))
        log.info("%s -> %s", self.item.source, self.destination)
        return list(self.paths.values())

    def abort(self) -> None:
        for writer in (self.classes, self.proba, self.instances):
            if writer is not None:
                writer.abort()
