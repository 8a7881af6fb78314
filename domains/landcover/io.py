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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window

from segsuite.core.errors import DataError
from segsuite.domains.landcover.classes import ClassMap

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
    bands = check_bands(src, bands)
    h, w = int(window.height), int(window.width)
    image = np.zeros((len(bands), h, w), np.float32)  # (C, h, w)
    valid = np.zeros((h, w), bool)  # (h, w)
    inner, dr, dc = _inside(window, src.height, src.width)
    if inner is None:
        return image, valid
    raw = read_raw(src, inner, bands)  # (C, ih, iw) in the file's dtype
    ok = valid_pixels(src, inner, bands, raw, alpha_is_mask)
    data = raw.astype(np.float32, copy=False)
    data[:, ~ok] = 0.0
    image[:, dr : dr + inner.height, dc : dc + inner.width] = data
    valid[dr : dr + inner.height, dc : dc + inner.width] = ok
    return image, valid


def read_tile(src: rasterio.DatasetReader, window: Window, bands: Sequence[int], alpha_is_mask: bool | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` of ``bands`` in the file's dtype ``(C, h, w)`` plus its valid mask ``(h, w)`` (see
    :func:`read_window`; invalid pixels keep whatever the file holds). The engine's tiles: normalised on the device."""
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
    h, w = int(window.height), int(window.width)
    labels = np.zeros((h, w), np.int64)
    valid = np.zeros((h, w), bool)
    inner, dr, dc = _inside(window, src.height, src.width)
    if inner is None:
        return labels, valid
    raw = read_raw(src, inner, [1])  # (1, ih, iw)
    ok = valid_pixels(src, inner, [1], raw)
    data = raw[0].astype(np.int64)
    data[~ok] = 0
    labels[dr : dr + inner.height, dc : dc + inner.width] = data
    valid[dr : dr + inner.height, dc : dc + inner.width] = ok
    return labels, valid


def iter_block_windows(height: int, width: int, rows: int = 512, cols: int | None = None) -> list[Window]:
    """Non-overlapping windows (clipped at the edge) that tile a ``height x width`` raster."""
    cols = cols or rows
    return [Window(c, r, min(cols, width - c), min(rows, height - r))
            for r in range(0, height, rows) for c in range(0, width, cols)]


def chunk_windows(src: rasterio.DatasetReader, target: int = 512) -> list[Window]:
    """Windows of about ``target`` px aligned to the file's blocks (whole tiles, or row groups of strips)."""
    bh, bw = src.block_shapes[0]
    rows = bh * max(1, target // bh) if bh <= target else target
    cols = bw * max(1, target // bw) if bw <= target else target
    return iter_block_windows(src.height, src.width, rows, cols)


def count_values(src: rasterio.DatasetReader, band: int = 1) -> tuple[dict[int, int], int]:
    """Pixel count per value of an integer ``band`` over valid pixels, read chunk by chunk; and the number of
    invalid (nodata/masked) pixels."""
    counts: dict[int, int] = {}
    invalid = 0
    small = np.dtype(src.dtypes[band - 1]) in (np.uint8, np.uint16)
    for window in chunk_windows(src):
        raw = read_raw(src, window, [band])  # (1, h, w)
        values, valid = raw[0], valid_pixels(src, window, [band], raw)
        invalid += int(valid.size - valid.sum())
        if small:  # bincount is linear time; unique sorts
            per_value = np.bincount(values[valid].ravel())
            ids = np.flatnonzero(per_value)
            pairs = zip(ids.tolist(), per_value[ids].tolist(), strict=True)
        else:
            pairs = zip(*(a.tolist() for a in np.unique(values[valid], return_counts=True)), strict=True)
        for value, n in pairs:
            counts[int(value)] = counts.get(int(value), 0) + int(n)
    return counts, invalid


def band_stats(cells: Sequence[tuple[PathLike, Window]], bands: Sequence[int] | None = None,
               max_pixels: int = 4_000_000, seed: int = 0, alpha_is_mask: bool | None = None) -> dict[str, Any]:
    """Per-band mean and std over valid pixels (as :func:`read_window` sees them) of candidate ``(path, window)`` cells.

    If the cells hold more than ``max_pixels`` pixels, a seeded random subset of cells within that budget is
    read, so huge scenes stay cheap; otherwise all are read and the result is exact. Returns plain lists:
    ``{"mean": [C], "std": [C], "pixels": int}``.
    """
    if not cells:
        raise DataError("no training windows to compute band statistics from")
    order = np.random.default_rng(seed).permutation(len(cells))
    chosen, budget = [], max_pixels
    for i in order:
        area = int(cells[i][1].width * cells[i][1].height)
        if chosen and area > budget:
            break
        chosen.append(cells[i])
        budget -= area
    by_file: dict[str, list[Window]] = {}
    for path, window in chosen:  # each file opened once
        by_file.setdefault(str(path), []).append(window)
    n, mean, m2 = 0, None, None
    for path, windows in by_file.items():
        with open_raster(path, check_data=False) as src:
            for window in windows:
                image, valid = read_window(src, window, bands, alpha_is_mask)
                x = image[:, valid].astype(np.float64)  # (C, n_valid)
                if x.shape[1] == 0:
                    continue
                n, mean, m2 = _merge_moments(n, mean, m2, x)
    if n == 0 or mean is None or m2 is None:
        raise DataError(f"no valid (non-nodata) pixels found in the training windows of {chosen[0][0]} and others")
    return {"mean": mean.tolist(), "std": np.sqrt(m2 / n).tolist(), "pixels": int(n)}


def _merge_moments(n: int, mean: np.ndarray | None, m2: np.ndarray | None, x: np.ndarray):
    """Chan et al. parallel update of count/mean/M2 with a ``(C, k)`` batch (numerically stable)."""
    k = x.shape[1]
    bmean = x.mean(axis=1)
    bm2 = ((x - bmean[:, None]) ** 2).sum(axis=1)
    if mean is None or m2 is None:
        return k, bmean, bm2
    delta = bmean - mean
    total = n + k
    return total, mean + delta * k / total, m2 + bm2 + delta**2 * n * k / total


def _same_transform(a: Affine, b: Affine) -> bool:
    """Coefficients equal up to 1e-9 relative (float noise from different writers)."""
    return all(abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y)) for x, y in zip(a[:6], b[:6], strict=True))


def check_pair(image_path: PathLike, label_path: PathLike) -> None:
    """Require the label raster to match the image: same CRS, transform and size; one integer band.
    The DataError lists every difference with both values."""
    with open_raster(image_path) as img, open_raster(label_path) as lbl:
        diffs = []
        if img.crs != lbl.crs:
            diffs.append(f"CRS: image {img.crs.to_string()} vs label {lbl.crs.to_string()}")
        if not _same_transform(img.transform, lbl.transform):
            diffs.append(f"transform: image {tuple(img.transform[:6])} vs label {tuple(lbl.transform[:6])}")
        if (img.width, img.height) != (lbl.width, lbl.height):
            diffs.append(f"width x height: image {img.width}x{img.height} vs label {lbl.width}x{lbl.height}")
        if diffs:
            raise DataError(f"label {label_path} does not match image {image_path}: " + "; ".join(diffs))
        if lbl.count != 1 or not np.issubdtype(np.dtype(lbl.dtypes[0]), np.integer):
            raise DataError(f"{label_path}: a label raster must have 1 integer band of class ids; "
                            f"got {lbl.count} band(s) of {lbl.dtypes[0]}")


def check_label_values(label_path: PathLike, class_map: ClassMap, ignore_index: int = 255) -> None:
    """Read the label raster chunk by chunk; DataError naming any values that are neither class ids nor
    ``ignore_index`` (pixels under the label's nodata/mask are not checked)."""
    with open_raster(label_path, check_data=False) as src:
        seen, _ = count_values(src)
    bad = sorted(set(seen) - set(class_map.ids) - {ignore_index})
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise DataError(f"{label_path}: label values {shown} are not in the class map ({class_map.source}: ids "
                        f"0..{len(class_map) - 1}); other accepted values: nodata and the ignore index {ignore_index}")


def _geometry(like: Mapping[str, Any] | rasterio.DatasetReader | PathLike) -> dict[str, Any]:
    """CRS, transform, width and height of a profile dict, an open dataset or a raster path."""
    if isinstance(like, (str, Path)):
        with open_raster(like, check_data=False) as src:
            return _geometry(src)
    prof = like.profile if hasattr(like, "profile") else like
    return {k: prof[k] for k in ("crs", "transform", "width", "height")}


class RasterWriter:
    """Streaming GeoTIFF writer for tiled inference: rows arrive top to bottom via ``write_rows``.

    The output keeps the template's CRS, transform, width and height exactly; it is tiled (``blocksize``),
    DEFLATE-compressed and BigTIFF when needed; ``cog``: converted to a Cloud-Optimized GeoTIFF on ``close``.
    Used as a context manager, an exception removes the file (the pipeline stages it anyway).
    """

    def __init__(self, path: PathLike, like: Mapping[str, Any] | rasterio.DatasetReader | PathLike, count: int = 1,
                 dtype: str = "uint8", nodata: float | None = None, colormap: Mapping[int, Sequence[int]] | None = None,
                 cog: bool = False, blocksize: int = 512, descriptions: Sequence[str] | None = None) -> None:
        if blocksize % 16:
            raise ValueError(f"blocksize must be a multiple of 16 (e.g. 256 or 512); got {blocksize}")
        if colormap is not None and (count != 1 or np.dtype(dtype) not in (np.uint8, np.uint16)):
            raise ValueError(f"a colour table needs 1 band of uint8/uint16; got {count} band(s) of {dtype}")
        geo = _geometry(like)
        self.height, self.width, self.count = int(geo["height"]), int(geo["width"]), int(count)
        self.dtype, self.nodata, self.cog, self.blocksize = np.dtype(dtype), nodata, cog, blocksize
        self.path = Path(path)
        self._tiff = self.path.with_name(f".{self.path.stem}.gtiff.tif") if cog else self.path  # COG: converted
        self.path.parent.mkdir(parents=True, exist_ok=True)
        integer = np.issubdtype(self.dtype, np.integer)
        try:
            self._dst = rasterio.open(self._tiff, "w", driver="GTiff", count=count, dtype=self.dtype.name,
                                      nodata=nodata, tiled=True, blockxsize=blocksize, blockysize=blocksize,
                                      compress="deflate", predictor=2 if integer else 3, bigtiff="IF_SAFER", **geo)
            if colormap is not None:
                self._dst.write_colormap(1, {int(k): tuple(int(v) for v in c) for k, c in colormap.items()})
            for i, text in enumerate(descriptions or [], start=1):
                self._dst.set_band_description(i, str(text))
        except (RasterioError, OSError) as exc:
            raise DataError(f"{self.path}: cannot create output GeoTIFF: {_why(exc)}") from exc
        self._rows = min(blocksize, self.height)  # one block row, buffered until full
        self._buffer = np.empty((self.count, self._rows, self.width), self.dtype)
        self._flushed = 0  # rows written to the file
        self._next = 0  # rows received

    def write_rows(self, row0: int, block: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Append ``block`` ``(C, rows, W)`` (or ``(rows, W)`` for one band) starting at ``row0``, which must be
        the next unwritten row. Where ``valid`` ``(rows, W)`` is False the nodata value is written."""
        block = np.asarray(block)
        block = block[None] if block.ndim == 2 else block
        rows = block.shape[1]
        if row0 != self._next:
            raise ValueError(f"{self.path}: rows must be written in order; expected row {self._next}, got {row0}")
        if block.shape[0] != self.count or block.shape[2] != self.width or row0 + rows > self.height:
            raise ValueError(f"{self.path}: block {block.shape} at row {row0} does not fit (C={self.count}, "
                             f"W={self.width}, H={self.height})")
        if valid is not None:
            if self.nodata is None:
                raise ValueError(f"{self.path}: a valid mask needs a nodata value for the output")
            block = np.where(np.asarray(valid, bool), block, self.nodata)
        pos = 0
        while pos < rows:  # whole block rows go to the file (GDAL compresses each tile once)
            buffered = self._next - self._flushed
            take = min(self._rows - buffered, rows - pos)
            self._buffer[:, buffered : buffered + take] = block[:, pos : pos + take]
            self._next, pos = self._next + take, pos + take
            if self._next - self._flushed == self._rows or self._next == self.height:
                self._write(self._buffer[:, : self._next - self._flushed])
                self._flushed = self._next

    def _write(self, data: np.ndarray) -> None:
        try:
            self._dst.write(data, window=Window(0, self._flushed, self.width, data.shape[1]))
        except RasterioError as exc:
            raise DataError(f"{self.path}: write failed at row {self._flushed}: {_why(exc)}") from exc

    def close(self) -> Path:
        """Finish the file (the COG conversion if asked); returns ``path``."""
        try:
            if self._next != self.height:
                raise DataError(f"{self.path}: incomplete output, {self._next} of {self.height} rows written")
            self._dst.close()
            if self.cog:
                resampling = "NEAREST" if np.issubdtype(self.dtype, np.integer) else "AVERAGE"
                rasterio.shutil.copy(self._tiff, self.path, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                                     BLOCKSIZE=self.blocksize, RESAMPLING=resampling, BIGTIFF="IF_SAFER")
                self._tiff.unlink()
        except RasterioError as exc:
            self.abort()
            raise DataError(f"{self.path}: cannot finish output GeoTIFF: {_why(exc)}") from exc
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the output: close and remove the file."""
        self._dst.close()
        self._tiff.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_output(path: PathLike, like: Mapping[str, Any] | rasterio.DatasetReader | PathLike, count: int = 1,
                dtype: str = "uint8", nodata: float | None = 255, colormap: Mapping[int, Sequence[int]] | None = None,
                cog: bool = False, blocksize: int = 512, descriptions: Sequence[str] | None = None) -> RasterWriter:
    """Start a streaming GeoTIFF shaped like ``like`` (a profile, dataset or path); see ``RasterWriter``.
    Defaults suit a class-id raster: 1 band uint8 with nodata 255 (pass ``colormap`` for a colour table)."""
    return RasterWriter(path, like, count, dtype, nodata, colormap, cog, blocksize, descriptions)
