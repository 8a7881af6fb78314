"""GeoTIFF input/output with rasterio: validated opening, windowed reads, statistics, pair checks, streaming writer.

Band indexes follow rasterio: 1-based. Windows may run past the raster edge; the outside part reads as invalid.

Nodata comes from a declared nodata value, an internal (or ``.msk``) mask, or NaN/inf in float data. A band GDAL
flags as *alpha* is a mask only when asked (``alpha_is_mask=True``) or, by default, when it is not one of the bands
read: GDAL flags the 4th band of every 4-band uint8 GeoTIFF written with default options as alpha, so RGB + NIR
imagery looks exactly like RGBA in the file's tags, and a NIR of 0 must not make a pixel nodata.

Rasters may also be remote: ``https://`` / ``http://`` and ``s3://`` URLs (read through GDAL's ``/vsicurl/`` and
``/vsis3/``) or any GDAL ``/vsi...`` path. GDAL then fetches only the byte ranges of the blocks read (the header and
the tiles of each window of a Cloud-Optimized GeoTIFF), under the options of :func:`remote_env`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.errors import RasterioError
from rasterio.windows import Window

from segsuite.core.chunks import aligned_step
from segsuite.core.errors import DataError
from segsuite.core.regions import Rect, cells, full_rect

PathLike = str | Path


def _why(exc: BaseException) -> str:
    """GDAL's own reason: rasterio often puts it in the chained exception."""
    cause = exc.__cause__ or exc.__context__
    return f"{exc} ({cause})" if cause and str(cause) not in str(exc) else str(exc)


REMOTE_PREFIXES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/"}  # URL scheme -> GDAL file system
REMOTE_DEFAULTS = {  # GDAL's advice for COGs over HTTP; a variable of the same name in the environment wins
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the URL's "folder" to look for sidecar files
    "GDAL_HTTP_MAX_RETRY": "3",  # on HTTP 429 / 5xx
    "GDAL_HTTP_RETRY_DELAY": "1",  # seconds, doubled at each retry
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",  # adjacent tiles of a window in one request
}
GEOTIFF_EXTENSIONS = ".tif,.tiff"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+")  # 2+ letters: "C:/" is a Windows drive, not a scheme


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) or a GDAL ``/vsi...`` path rather than a local file."""
    text = str(path)
    return text.startswith("/vsi") or _SCHEME.match(text) is not None


def as_location(path: PathLike) -> PathLike:
    """A local path as a Path; a remote one as the string the user wrote. ``Path("https://h/x.tif")`` reads
    ``https:/h/x.tif`` (pathlib collapses "//"), and remote inputs pass through code that holds inputs as Paths:
    the scheme's "//" is put back here."""
    if not is_remote(path):
        return Path(path)
    return re.sub(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]+):/+", r"\1://", str(path), count=1)


def gdal_path(location: PathLike) -> str:
    """The path GDAL opens: ``https://h/x.tif`` -> ``/vsicurl/https://h/x.tif``, ``s3://b/k.tif`` -> ``/vsis3/b/k.tif``;
    ``/vsi...`` paths and local files as they are. A DataError for other URL schemes."""
    text = str(as_location(location))
    match = _SCHEME.match(text)
    if match is None:
        return text
    scheme = match.group(1).lower()
    if scheme not in REMOTE_PREFIXES:
        raise DataError(f"{text}: URL scheme {scheme}:// is not supported; give an https:// / http:// or s3:// URL, "
                        "a GDAL /vsi... path or a local file")
    prefix = REMOTE_PREFIXES[scheme]
    return prefix + (text if prefix == "/vsicurl/" else text[match.end():])


def location_name(location: Any) -> str:
    """The file name of a local path or of a URL's last path component (query string stripped): its outputs' name."""
    if not is_remote(location):
        return Path(location).name
    text = str(as_location(location)).split("?", 1)[0]
    return (urlsplit(text).path if _SCHEME.match(text) else text).rsplit("/", 1)[-1]


def remote_env(location: PathLike) -> contextlib.AbstractContextManager:
    """GDAL options for reading ``location``, scoped to the ``with`` block (``rasterio.Env``): COG-friendly defaults
    unless the environment sets them, and for a URL naming a .tif/.tiff, ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` (no
    requests for sidecar files like ``.aux.xml`` or ``.msk``). Nothing for a local file. S3 credentials come from
    GDAL's usual AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_NO_SIGN_REQUEST`` ...)."""
    if not is_remote(location):
        return contextlib.nullcontext()
    options = dict(REMOTE_DEFAULTS)
    if _SCHEME.match(str(location)) and location_name(location).lower().endswith((".tif", ".tiff")):
        options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = GEOTIFF_EXTENSIONS  # a /vsi path is taken as written
    return rasterio.Env(**{k: v for k, v in options.items() if k not in os.environ})


def bound_block_cache(nbytes: int) -> Callable[[], None]:
    """Set GDAL's block cache to ``nbytes`` and a quarter (at least 16 MiB) and return what restores it; nothing
    changes when the environment sets ``GDAL_CACHEMAX`` (the user's choice wins). GDAL's default, 5 % of the RAM,
    fills whatever the engine needs again: 646 MiB added predicting an 8192^2 scene here, against 203 MiB bounded
    and 241 MiB with 64 MiB, at the same speed; 24 MiB on a 4096^2 scene (below its 32 MiB need) was 30 % slower.
    Sized to what the engine reads twice, prediction memory is set by tile, band and readers."""
    if "GDAL_CACHEMAX" in os.environ:
        return lambda: None
    before = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", max(int(nbytes * 1.25), 16 << 20))  # + the output rasters' blocks
    return lambda: set_gdal_config("GDAL_CACHEMAX", before)


def _remote_failure(location: str, exc: BaseException) -> str:
    """One line saying why the remote raster ``location`` did not open: not found, an HTTP error, not a GeoTIFF."""
    why = " ".join(_why(exc).split())
    via = gdal_path(location)
    shown = location if via.startswith("/vsicurl/") or via == location else f"{location} (GDAL path {via})"
    code = re.search(r"HTTP response code: (\d+)", why)
    if code and code.group(1) == "404":
        return f"{shown}: remote raster not found (HTTP 404)"
    if "does not exist in the file system" in why:
        return f"{shown}: remote raster not found: {why}"
    if code:
        hint = " (AWS credentials: AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_NO_SIGN_REQUEST ...)" if via != location else ""
        return f"{shown}: HTTP error {code.group(1)} reading the remote raster{hint}: {why}"
    if "not recognized as being in a supported file format" in why:
        return f"{shown}: not a GeoTIFF (GDAL cannot read it as a raster): {why}"
    return f"{shown}: cannot read the remote raster: {why}"


def _open(path: PathLike) -> rasterio.DatasetReader:
    """``rasterio.open`` of a local file or remote location; a DataError naming it when that fails."""
    location = as_location(path)
    if not is_remote(location):
        if not Path(location).is_file():
            raise DataError(f"raster not found: {location}")
        try:
            return rasterio.open(location)
        except RasterioError as exc:
            raise DataError(f"{location}: not a readable raster (GeoTIFF expected): {_why(exc)}") from exc
    try:
        with remote_env(location):
            return rasterio.open(gdal_path(location))
    except RasterioError as exc:
        raise DataError(_remote_failure(str(location), exc)) from exc


def open_raster(path: PathLike, require_crs: bool = True, check_data: bool = True) -> rasterio.DatasetReader:
    """Open a raster (a local file, a URL or a GDAL ``/vsi`` path), checking it exists, opens, has a CRS and
    (``check_data``) that its last block reads, which catches truncated files cheaply. Every failure is a DataError
    naming ``path``."""
    src = _open(path)
    try:
        if require_crs and src.crs is None:
            raise DataError(f"{as_location(path)}: raster has no CRS; a georeferenced GeoTIFF (e.g. EPSG:32631) is "
                            "required")
        if check_data:
            bh, bw = src.block_shapes[0]
            row0, col0 = (src.height - 1) // bh * bh, (src.width - 1) // bw * bw
            read_raw(src, Window(col0, row0, src.width - col0, src.height - row0), list(src.indexes))
    except BaseException:
        src.close()
        raise
    return src


def read_raw(src: rasterio.DatasetReader, window: Window, bands: list[int], masks: bool = False) -> np.ndarray:
    """``src.read`` (or ``read_masks``) of ``bands`` in ``window``, in the file's dtype ``(C, h, w)``; errors become
    DataError naming the file and window."""
    try:
        with remote_env(src.name):
            if masks:
                return src.read_masks(bands, window=window)
            return src.read(bands, window=window)
    except RasterioError as exc:
        raise DataError(f"{src.name}: read failed at {window} (truncated or corrupt file?): {_why(exc)}") from exc


def check_bands(src: rasterio.DatasetReader, bands: Sequence[int] | None) -> list[int]:
    """Validated 1-based band list (all bands when ``bands`` is None)."""
    if bands is None:
        return list(src.indexes)
    out = [int(b) for b in bands]
    bad = [b for b in out if not 1 <= b <= src.count]
    if bad or not out:
        raise DataError(f"{src.name}: bands {bad or out} not available; this raster has bands 1..{src.count} (1-based)")
    return out


def _inside(window: Window, height: int, width: int) -> tuple[Window | None, int, int]:
    """Part of an integer ``window`` inside the raster and its (row, col) offset in the window."""
    r0, c0 = max(int(window.row_off), 0), max(int(window.col_off), 0)
    r1 = min(int(window.row_off + window.height), height)
    c1 = min(int(window.col_off + window.width), width)
    if r1 <= r0 or c1 <= c0:
        return None, 0, 0
    return Window(c0, r0, c1 - c0, r1 - r0), r0 - int(window.row_off), c0 - int(window.col_off)


def _representable(value: float, dtype: np.dtype) -> bool:
    """Whether some pixel of ``dtype`` can equal the nodata ``value``."""
    if np.isnan(value):
        return False
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def alpha_band(src: rasterio.DatasetReader) -> int | None:
    """1-based index of the band GDAL marks as alpha, or None."""
    interp = list(src.colorinterp)
    return interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None


def alpha_is_nodata(src: rasterio.DatasetReader, bands: Sequence[int], alpha_is_mask: bool | None = None) -> bool:
    """Whether the alpha band marks nodata when reading ``bands``: as ``alpha_is_mask`` says, or (None) only when the
    alpha band is not itself read, as for RGBA imagery read as its 3 colour bands."""
    if alpha_is_mask is not None:
        return bool(alpha_is_mask)
    alpha = alpha_band(src)
    return alpha is not None and alpha not in bands


def _mask_kind(flags: list[MaskFlags], alpha: bool) -> str:
    """How a band's nodata is found: "none", "nodata" (compare with the value) or "mask" (read GDAL's mask)."""
    if MaskFlags.alpha in flags:
        return "mask" if alpha else "none"
    if MaskFlags.nodata in flags:
        return "nodata"
    return "none" if MaskFlags.all_valid in flags else "mask"  # internal or .msk mask, per dataset or per band


def valid_pixels(
    src: rasterio.DatasetReader,
    window: Window,
    bands: list[int],
    data: np.ndarray,
    alpha_is_mask: bool | None = None,
) -> np.ndarray:
    """Valid mask ``(h, w)`` for ``data`` ``(C, h, w)`` just read from ``bands`` in ``window`` (file dtype): not at a
    band's nodata value, inside its internal mask (and alpha, see :func:`alpha_is_nodata`) and finite. Nodata values
    are compared directly and a per-dataset mask is read once, so files without a mask cost no extra read."""
    alpha = alpha_is_nodata(src, bands, alpha_is_mask)
    kinds = [_mask_kind(src.mask_flag_enums[b - 1], alpha) for b in bands]
    ok = np.ones(data.shape[1:], bool)
    for band, kind, b in zip(data, kinds, bands):
        value = src.nodatavals[b - 1]
        if kind == "nodata" and _representable(value, band.dtype):  # else no pixel holds it (NaN: tested below)
            ok &= band != band.dtype.type(value)
    masked = [b for b, kind in zip(bands, kinds) if kind == "mask"]
    if masked:
        if MaskFlags.per_dataset in src.mask_flag_enums[masked[0] - 1]:
            masked = masked[:1]  # one mask shared by every band
        ok &= (read_raw(src, window, masked, masks=True) > 0).all(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        ok &= np.isfinite(data).all(axis=0)
    return ok


def read_window(
    src: rasterio.DatasetReader, window: Window, bands: Sequence[int] | None = None, alpha_is_mask: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` of ``bands`` as float32 ``(C, h, w)`` plus a valid mask ``(h, w)``.

    A pixel is valid when no selected band holds its nodata value, it is inside the file's internal mask (and the
    alpha band's, see :func:`alpha_is_nodata`), every band is finite (NaN/inf count as nodata) and it lies inside the
    raster. Invalid pixels read as 0.
    """
    data, valid = read_tile(src, window, check_bands(src, bands), alpha_is_mask)
    image = data.astype(np.float32)  # (C, h, w), a copy
    image[:, ~valid] = 0.0
    return image, valid


def read_tile(src: rasterio.DatasetReader, window: Window, bands: Sequence[int], alpha_is_mask: bool | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` of ``bands`` in the file's dtype ``(C, h, w)`` plus its valid mask ``(h, w)`` (see
    :func:`read_window`; invalid pixels keep whatever the file holds, 0 outside the raster). The engine's tiles:
    normalised on the device."""
    h, w = int(window.height), int(window.width)
    inner, dr, dc = _inside(window, src.height, src.width)
    if inner is not None and (dr, dc, inner.height, inner.width) == (0, 0, h, w):  # the usual case: no padding
        raw = read_raw(src, inner, list(bands))
        return raw, valid_pixels(src, inner, list(bands), raw, alpha_is_mask)
    image = np.zeros((len(bands), h, w), np.dtype(src.dtypes[bands[0] - 1]))
    valid = np.zeros((h, w), bool)
    if inner is not None:
        raw = read_raw(src, inner, list(bands))
        image[:, dr : dr + inner.height, dc : dc + inner.width] = raw
        valid[dr : dr + inner.height, dc : dc + inner.width] = valid_pixels(src, inner, list(bands), raw,
                                                                           alpha_is_mask)
    return image, valid


def read_label_window(src: rasterio.DatasetReader, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Read band 1 of a label raster in ``window`` as int64 ``(h, w)`` plus a valid mask ``(h, w)``
    (False at the label's nodata/mask and outside the raster; labels there are 0)."""
    data, valid = read_tile(src, window, [1])
    labels = data[0].astype(np.int64)  # (h, w)
    labels[~valid] = 0
    return labels, valid


def chunk_windows(src: rasterio.DatasetReader, target: int = 512) -> list[Window]:
    """Windows of about ``target`` px aligned to the file's blocks (whole tiles, or row groups of strips)."""
    size = tuple(aligned_step(block, target) for block in src.block_shapes[0])
    return [as_window(cell) for cell in cells(full_rect(src.height, src.width), size)]


def as_window(rect: Rect) -> Window:
    """A :class:`~segsuite.core.regions.Rect` as rasterio's window."""
    return Window(rect.col0, rect.row0, rect.width, rect.height)


def window_rect(window: Window) -> Rect:
    r, c = int(window.row_off), int(window.col_off)
    return Rect(r, c, r + int(window.height), c + int(window.width))
