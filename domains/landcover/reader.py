"""Land-cover inputs for predict and evaluate: a GeoTIFF (local or a URL), a folder, a pattern or a list of them, or
a held-out region of a labelled scene, read tile by tile and normalised exactly as in training
(:class:`RasterSource`, the engine's streaming source)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.domain import BaseOpened, BaseRawSource, BaseReader
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.files import find_inputs
from segsuite.core.inference import InferenceOptions
from segsuite.core.io import pattern_matches, work_folder
from segsuite.core.preview import stretch
from segsuite.core.probes import Probes, file_version
from segsuite.core.regions import Rect, full_rect
from segsuite.domains.landcover.dataset import IMAGE_SUFFIXES, Region, class_targets
from segsuite.domains.landcover.io import (
    as_location,
    bound_block_cache,
    check_bands,
    chunk_windows,
    gdal_path,
    is_remote,
    location_name,
    open_raster,
    read_label_window,
    read_tile,
    window_rect,
)
from segsuite.domains.landcover.mosaic import MOSAIC_PREFIX, mosaic_files, write_vrt
from segsuite.domains.landcover.report import M2_PER_HECTARE, decimated, pixel_area_m2
from segsuite.domains.landcover.stac import STAC_PREFIX, stac_rasters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandNormalizer:
    """The training normalisation of :func:`~segsuite.domains.landcover.dataset.normalize` for whole batches on the
    model's device: ``(x - mean) / std`` per band (a band with std 0 only centred), 0 where the input is not valid.
    The same float32 arithmetic as the numpy path, so the results are equal. Equal normalizers share batches."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_meta(cls, meta: Any) -> BandNormalizer:
        norm = meta["normalization"]
        return cls(tuple(float(m) for m in norm["mean"]), tuple(float(s) for s in norm["std"]))

    def __call__(self, x: torch.Tensor, valid: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, C, h, w)`` in the file's dtype, ``valid`` ``(B, h, w)`` (None: all valid) -> float32
        ``(B, C, h, w)`` (into ``out`` when given)."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor([s if s > 0 else 1.0 for s in self.std], dtype=torch.float32, device=x.device)
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device) if out is None else out
        out.copy_(x)  # a copy, then in place: torch's out-of-place uint16 -> float arithmetic is several times slower
        out.sub_(mean).div_(std.view(1, -1, 1, 1))
        if valid is not None:
            out.masked_fill_(~valid[:, None], 0.0)
        return out


@dataclass(frozen=True)
class Probed:
    """What opening a raster found (:attr:`RasterSource.probed`): enough to check a checkpoint's bands against it and
    to open it again without reading it (the names of a dataset's attributes)."""

    name: str
    count: int
    height: int
    width: int
    profile: Any


class RasterSource(BaseRawSource):
    """A GeoTIFF (or a rectangle ``region`` of it) as a tiled-inference source, read with a checkpoint's ``meta``
    (bands, normalisation); windows are relative to the region. Tiles travel in the file's dtype with their valid
    mask and are normalised on the device (:class:`BandNormalizer`); every thread that reads gets its own handle
    (GDAL handles must not be shared by threads). Opening checks the file (readable, not truncated, has a CRS, the
    bands): a DataError naming the file. ``probed``: what an earlier opening of the unchanged file found; the file
    is then not opened here (only by the threads that read it) and only the bands are checked."""

    def __init__(self, path: str | Path, meta: Any, region: Rect | None = None, probed: Probed | None = None) -> None:
        self.path, self.meta = as_location(path), meta  # a URL stays the string given
        self._local, self._handles, self._lock = threading.local(), [], threading.Lock()
        first = probed or self._handle(check_data=True)
        expected = meta.get("image_band_count")  # the training images' band count, when they agreed on one
        try:
            if expected is not None and first.count != expected:
                raise DataError(f"{self.path} has {first.count} band(s) but the model was trained on "
                                f"{expected}-band images (reading bands {list(meta['bands'])}: "
                                f"{', '.join(meta.get('band_names', []))})")
            check_bands(first, meta["bands"])
        except DataError:
            self.close()
            raise
        self.bands = [int(b) for b in meta["bands"]]
        self.alpha = meta.get("alpha_is_mask")  # the training data's nodata rule for an alpha band (io.alpha_is_nodata)
        self.region = region or full_rect(first.height, first.width)
        self.shape = (self.region.height, self.region.width)
        self.profile = first.profile  # the outputs' template: CRS, transform, size
        self.probed = Probed(str(first.name), first.count, first.height, first.width, self.profile)
        self.normalizer = BandNormalizer.from_meta(meta)

    def _handle(self, check_data: bool = False) -> rasterio.DatasetReader:
        """This thread's handle on the file, opened on first use."""
        src = getattr(self._local, "src", None)
        if src is None:
            src = self._local.src = open_raster(self.path, check_data=check_data)
            with self._lock:
                self._handles.append(src)
        return src

    def _window(self, window: Sequence[int]) -> Window:
        row, col, height, width = (int(v) for v in window)
        return Window(col + self.region.col0, row + self.region.row0, width, height)

    def load(self, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(data (C, h, w) in the file's dtype, valid (h, w))`` for ``(row, col, height, width)``."""
        return read_tile(self._handle(), self._window(window), self.bands, self.alpha)

    def any_valid(self) -> bool:
        """Whether the region holds a valid pixel; reads block-aligned chunks up to the first valid one."""
        reg, src = self.region, self._handle()
        for chunk in map(window_rect, chunk_windows(src)):
            r0, c0 = max(chunk.row0, reg.row0), max(chunk.col0, reg.col0)
            r1, c1 = min(chunk.row1, reg.row1), min(chunk.col1, reg.col1)
            if r1 > r0 and c1 > c0 and read_tile(src, Window(c0, r0, c1 - c0, r1 - r0), self.bands,
                                                 self.alpha)[1].any():
                return True
        return False

    def close(self) -> None:
        with self._lock:
            for src in self._handles:
                src.close()
            self._handles.clear()
        self._local = threading.local()


class ArraySource(BaseRawSource):
    """An in-memory image ``(C, H, W)`` read as :class:`RasterSource` reads a GeoTIFF: the checkpoint's bands (``C``
    the model's bands, or every band of the training images), NaN/inf and a masked array's mask as nodata, normalised
    with the training statistics on the device (0 at nodata)."""

    def __init__(self, array: np.ndarray, meta: Any) -> None:
        bands, total = list(meta["bands"]), meta.get("image_band_count")
        if array.ndim != 3 or array.shape[0] not in {len(bands), total}:
            accepted = " or ".join(f"C={n}" for n in dict.fromkeys([len(bands), total]) if n)
            raise DataError(f"an array of shape {tuple(array.shape)}: expected (C, H, W) with {accepted} (bands "
                            f"{', '.join(meta.get('band_names', [])) or bands})")
        if array.shape[0] != len(bands):
            array = array[[b - 1 for b in bands]]
        data = np.ma.getdata(array).astype(np.float32)
        self.valid_mask = ~np.ma.getmaskarray(array).any(0) & np.isfinite(data).all(0)  # (H, W)
        if not self.valid_mask.any():
            raise DataError("the array holds only nodata (NaN, inf or masked); nothing to predict")
        self.image = np.where(self.valid_mask, data, 0)
        self.normalizer = BandNormalizer.from_meta(meta)
        self.shape = self.valid_mask.shape
        self.region = full_rect(*self.shape)

    def load(self, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        row, col, height, width = window
        return self.image[:, row : row + height, col : col + width], self.valid_mask[row : row + height,
                                                                                     col : col + width]


@dataclass
class OpenedScene(BaseOpened):
    """The sources of one item (a whole raster, or the rectangles of a held-out region) and, for a labelled region,
    its label (and instance) rasters. Sinks share the valid mask and the truth of a row block: read once."""

    sources: list[RasterSource]
    labels: rasterio.DatasetReader | None = None
    instances: rasterio.DatasetReader | None = None
    num_classes: int = 0
    ignore_index: int = 255
    streaming: bool = True
    bands: bool = True  # the sinks take rectangles: a wide raster goes through in column bands
    _truth: tuple[tuple[int, int, int], Any] | None = None  # the last block's truth and where it is
    _restore_cache: Callable[[], None] | None = None  # GDAL's block cache as it was before this item

    def valid(self, p: Prediction) -> np.ndarray:
        """``(n, w)``: the input is valid there and a window was computed."""
        return p.covered  # the engine carries each tile's valid mask: nodata pixels are not covered

    def truth(self, p: Prediction) -> tuple[np.ndarray, np.ndarray | None]:
        """Target classes ``(n, w)`` int64 (ignore index where unlabelled, ignored or the input is nodata; a
        DataError for values outside 0..K-1) and the instance raster's ids (None without one)."""
        if self._truth is None or self._truth[0] != (p.source, p.row0, p.col0):
            self._truth = ((p.source, p.row0, p.col0), self._read_truth(p))
        return self._truth[1]

    def _read_truth(self, p: Prediction) -> tuple[np.ndarray, np.ndarray | None]:
        rect, (n, w) = self.sources[p.source].region, p.classes.shape
        window = Window(rect.col0 + p.col0, rect.row0 + p.row0, w, n)
        labels, labelled = read_label_window(self.labels, window)
        keep = labelled & self.valid(p) & (labels != self.ignore_index)
        ids = None if self.instances is None else read_label_window(self.instances, window)[0]
        return class_targets(labels, keep, self.num_classes, self.ignore_index, self.labels.name), ids

    def cell_size(self) -> tuple[float, str] | None:
        """One pixel's area in hectares (``segsuite.core.api``); None without a projected CRS (arrays, degrees)."""
        profile = getattr(self.sources[0], "profile", None)
        if profile is None:
            return None
        area, _ = pixel_area_m2(profile.get("crs"), profile["transform"])
        return None if area is None else (area / M2_PER_HECTARE, "ha")

    def bound_cache(self, job: Job) -> OpenedScene:
        """GDAL's block cache sized for this item (:func:`.io.bound_block_cache`): the pixels the engine reads again
        (``InferenceOptions.reread_pixels``) of its widest source, in the file's bytes; restored on :meth:`close`."""
        src, model = max(self.sources, key=lambda s: s.shape[1]), job.model
        rows = max(int(src.profile.get("blockysize") or 0), 512)  # a VRT's sources' blocks: take 512 at least
        pixels = (self.options or job.options or InferenceOptions()).reread_pixels(
            src.shape, model.engine_channels or model.channels, rows, model.predictor.device)
        self._restore_cache = bound_block_cache(pixels * len(src.bands) * np.dtype(src.profile["dtype"]).itemsize)
        return self

    def close(self) -> None:
        for src in [*self.sources, self.labels, self.instances]:
            if src is not None:
                src.close()
        if self._restore_cache is not None:
            self._restore_cache()
            self._restore_cache = None


class GeoTiffReader(BaseReader):
    """A GeoTIFF, a folder of them (outputs then go to a folder under the same names) or a remote GeoTIFF (an
    https:// or s3:// URL, a GDAL /vsi path: see :mod:`segsuite.domains.landcover.io`); evaluate's items are
    :class:`~segsuite.domains.landcover.dataset.Region` s of labelled scenes.

    :meth:`open` reuses what :meth:`check` found in a local file that has not changed since (by path, modification
    time and size): the file is opened once to be checked and then only by the threads that read it.

    Many rasters as one input (:mod:`.mosaic`, :mod:`.stac`): a GDAL VRT file; ``mosaic:PATTERN`` (a glob of scenes
    on one grid, built into a VRT); ``stac:ITEMS.json`` (a path or URL) whose items' ``stac_assets`` are read, one
    output per item (``stac_mode: items``) or all items as one mosaic (``stac_mode: mosaic``). ``reproject``: a
    mosaic's inputs in another CRS are warped onto the first one's grid instead of refused.
    """

    def __init__(self, stac_assets: Sequence[str] | str = ("image",), stac_mode: str = "items",
                 reproject: bool = False) -> None:
        if stac_mode not in ("items", "mosaic"):
            raise ConfigError(f"stac_mode={stac_mode!r}: choose items (one output per item) or mosaic (one output)")
        self.stac_assets = [stac_assets] if isinstance(stac_assets, str) else list(stac_assets)
        self.stac_mode, self.reproject = stac_mode, bool(reproject)
        self._probed = Probes()  # check's findings, taken by open
        self._vrts: Path | None = None  # the VRTs built for mosaic: and stac: inputs

    def find(self, input: Any, job: Job) -> list[Item]:
        """Items of a GeoTIFF, a folder, a URL, a glob pattern (``scenes/*.tif``) or a list of any of these
        (``input=[a.tif,https://host/b.tif]``); several items write into an output folder, each under its file's
        name."""
        if isinstance(input, Sequence) and not isinstance(input, (str, bytes)):
            if not input:
                raise DataError("input is an empty list; give GeoTIFFs, folders or URLs")
            return [item for entry in input for item in self.find(entry, job)]
        if isinstance(input, str) and input.startswith((MOSAIC_PREFIX, STAC_PREFIX)):
            return self._many_as_one(input)
        if not is_remote(input) and (matches := pattern_matches(input)) is not None:
            return [item for path in matches for item in self.find(path, job)]
        if is_remote(input):  # a URL or GDAL /vsi path: one raster, named after its last path component
            location = as_location(input)
            gdal_path(location)  # a DataError for an unsupported URL scheme
            if not location_name(location):
                raise DataError(f"{location}: the URL names no file (remote folders cannot be listed; give one "
                                "GeoTIFF's URL)")
            return [Item(location_name(location), location)]
        if Path(str(input)).is_file():  # any raster GDAL reads, named directly
            return [Item(Path(str(input)).name, Path(str(input)))]
        found = find_inputs(input, IMAGE_SUFFIXES, "GeoTIFFs (*.tif, *.tiff) or VRTs (*.vrt)", recursive=False)
        return [Item(path.name, path, rel or Path()) for path, rel in found]

    def _many_as_one(self, input: str) -> list[Item]:
        """Items of ``mosaic:PATTERN`` (one VRT) or ``stac:JSON`` (a raster or VRT per item, or one mosaic VRT)."""
        folder = self._vrts = self._vrts or work_folder("segsuite-vrt-")  # a later run removes it once we are gone
        if input.startswith(MOSAIC_PREFIX):
            vrt = write_vrt(mosaic_files(input[len(MOSAIC_PREFIX):]), folder / "mosaic.vrt", reproject=self.reproject)
            return [Item("mosaic", vrt)]
        rasters = []
        for name, hrefs in stac_rasters(input[len(STAC_PREFIX):], self.stac_assets):
            one = hrefs[0] if len(hrefs) == 1 else write_vrt(hrefs, folder / f"{name}.vrt", separate=True)
            rasters.append((name, as_location(one)))
        if self.stac_mode == "mosaic":
            mosaic = write_vrt([str(r) for _, r in rasters], folder / "mosaic.vrt", reproject=self.reproject)
            return [Item("mosaic", mosaic)]
        if len(rasters) == 1:  # one item: OUTPUT may be its file
            return [Item(rasters[0][0], rasters[0][1])]
        return [Item(name, raster, Path(f"{name}.tif")) for name, raster in rasters]

    def check(self, item: Item, job: Job) -> None:
        """Opens, not truncated, has a CRS, the checkpoint's bands and (a whole raster) some valid pixel."""
        region = item.source if isinstance(item.source, Region) else None
        path = as_location(region.scene.image if region else item.source)
        version = file_version(path)  # before reading it
        with RasterSource(path, job.model.meta) as source:
            if region is None and not source.any_valid():
                raise DataError(f"{item.source}: every pixel is nodata; nothing to predict")
        self._probed.keep(version, source.probed)

    def from_array(self, array: np.ndarray, job: Job) -> OpenedScene:
        """An in-memory image ``(C, H, W)`` (``segsuite.core.api``) prepared as a GeoTIFF is: the checkpoint's bands and
        normalisation; NaN, inf and masked pixels are nodata (class 255 in the result)."""
        return OpenedScene([ArraySource(array, job.model.meta)], bands=False)  # whole in memory: rows

    def preview(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The demo page's picture of a scene: its first three bands, read at the result's size, stretched to RGB."""
        try:
            with open_raster(path, require_crs=False, check_data=False) as src:
                data, _ = decimated(src, list(range(1, min(src.count, 3) + 1)), shape[-2:])
        except DataError as err:  # a nicety: the prediction reports bad files
            log.info("no preview of %s: %s", path, err)
            return None
        return stretch(data)

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """A small synthetic scene with the checkpoint's band count, written into ``folder`` once (demo page)."""
        from segsuite.domains.landcover.synthetic import make_scene

        bands = int(job.model.meta.get("image_band_count") or max(job.model.meta["bands"]))
        path = folder / f"scene_{bands}bands.tif"
        if not path.exists():
            make_scene(path, folder / "labels" / path.name, height=384, width=384, seed=5, bands=bands)
        return [path]

    def open(self, item: Item, job: Job) -> OpenedScene:
        meta = job.model.meta
        path = as_location(item.source.scene.image if isinstance(item.source, Region) else item.source)
        probed = self._probed.take(path)  # None: the file changed (or is remote)
        if not isinstance(item.source, Region):
            return OpenedScene([RasterSource(path, meta, probed=probed)]).bound_cache(job)
        scene = item.source.scene
        opened = OpenedScene([], num_classes=meta.num_classes, ignore_index=meta.ignore_index)
        try:
            for rect in item.source.rects:
                opened.sources.append(RasterSource(path, meta, rect, probed))
                probed = opened.sources[-1].probed  # the scene's other rectangles: no second opening
            opened.labels = open_raster(scene.label, check_data=False)
            if scene.instances is not None:
                opened.instances = open_raster(scene.instances, check_data=False)
        except BaseException:
            opened.close()
            raise
        return opened.bound_cache(job)
