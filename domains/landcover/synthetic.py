"""Synthetic land-cover scenes: projected multi-band GeoTIFF + label raster (+ instance raster), deterministic
from a seed.

Blob-shaped forest/moor/herbaceous regions with distinct spectra, straight roads, rectangular buildings,
per-pixel noise and a nodata border, so a small CNN can learn the classes. Buildings are isolated rectangles and
rows of 3-6 terraced houses separated by exactly 1 px of ground (as the U-Net paper's touching cells); each
building is one instance with its own roof tone, and no two buildings overlap or touch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from segsuite.core.errors import ConfigError
from segsuite.core.io import Staging
from segsuite.domains.landcover.classes import DEFAULT_CLASSES

BUILDING, ROAD = 4, 5
LABEL_NODATA = 255
BAND_NAMES = ("red", "green", "blue", "nir")
# Reflectance (R, G, B, NIR) per lecture class: dense/sparse forest, moor, herbaceous, building, road.
SIGNATURES = np.array([[0.03, 0.06, 0.03, 0.35], [0.06, 0.09, 0.05, 0.27], [0.10, 0.07, 0.09, 0.17],
                       [0.07, 0.13, 0.05, 0.46], [0.30, 0.28, 0.27, 0.30], [0.17, 0.17, 0.18, 0.20]], np.float32)
# dtype -> (reflectance scale, nodata value); valid pixels are kept away from the nodata value.
DTYPES = {"uint8": (500.0, 0), "uint16": (10000.0, 0), "int16": (10000.0, -9999), "float32": (1.0, float("nan"))}


def _signatures(bands: int, seed: int) -> np.ndarray:
    """``(6, bands)`` reflectances: R, G, B, NIR first, extra bands drawn from ``seed``."""
    if bands <= 4:
        return SIGNATURES[:, :bands]
    extra = np.random.default_rng(seed).uniform(0.05, 0.5, (len(SIGNATURES), bands - 4)).astype(np.float32)
    return np.concatenate([SIGNATURES, extra], axis=1)


def _to_dtype(reflectance: np.ndarray, dtype: str) -> np.ndarray:
    """Scale reflectance ``(C, h, w)`` to ``dtype``; integer values clipped to [1, max] so none equals nodata 0."""
    scale, _ = DTYPES[dtype]
    if dtype == "float32":
        return reflectance.astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.rint(reflectance * scale), 1, info.max).astype(dtype)


def _line(r0: int, c0: int, r1: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns of a 1 px straight line from (r0, c0) to (r1, c1), both ends included."""
    n = max(abs(r1 - r0), abs(c1 - c0)) + 1
    return np.rint(np.linspace(r0, r1, n)).astype(int), np.rint(np.linspace(c0, c1, n)).astype(int)


def _free(blocked: np.ndarray, r0: int, c0: int, r1: int, c1: int) -> bool:
    """Whether rows ``r0:r1``, cols ``c0:c1`` lie inside the scene with no blocked pixel within 1 px of them."""
    height, width = blocked.shape
    if r0 < 0 or c0 < 0 or r1 > height or c1 > width:
        return False
    return not blocked[max(r0 - 1, 0) : r1 + 1, max(c0 - 1, 0) : c1 + 1].any()


def _row_of_houses(rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """3-6 adjacent houses ``(r0, c0, r1, c1)`` relative to the row's corner, 1 px of ground between neighbours;
    west-east or north-south."""
    n, depth = int(rng.integers(3, 7)), int(rng.integers(5, 10))
    widths = rng.integers(3, 7, n)
    starts = np.concatenate([[0], np.cumsum(widths[:-1] + 1)])  # each house starts 1 px after the previous one
    houses = [(0, int(s), depth, int(s + w)) for s, w in zip(starts, widths, strict=True)]
    if rng.random() < 0.5:  # north-south row: transpose
        houses = [(c0, r0, c1, r1) for r0, c0, r1, c1 in houses]
    return houses


def _place(instances: np.ndarray, blocked: np.ndarray, houses: list[tuple[int, int, int, int]],
           rng: np.random.Generator, tries: int = 20) -> None:
    """Put a group of rectangles at a random free spot (``_free`` for the group's bounding box; up to ``tries``
    attempts, else skipped), one new instance id each; marks them in ``blocked``."""
    height, width = instances.shape
    gh, gw = max(h[2] for h in houses), max(h[3] for h in houses)
    for _ in range(tries):
        r, c = int(rng.integers(0, max(height - gh, 0) + 1)), int(rng.integers(0, max(width - gw, 0) + 1))
        if _free(blocked, r, c, r + gh, c + gw):
            first = int(instances.max()) + 1
            for i, (r0, c0, r1, c1) in enumerate(houses):
                instances[r + r0 : r + r1, c + c0 : c + c1] = first + i
            blocked[r : r + gh, c : c + gw] = True
            return


def synthetic_layout(height: int, width: int, rng: np.random.Generator, n_roads: int | None = None,
                     n_buildings: int | None = None, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label map ``(height, width)`` uint8 (smooth blobs of classes 0-3, rectangles of 4, road lines of 5) and
    instance map ``(height, width)`` uint32 (0 = no building, 1..n one id per building rectangle).

    ``n_rows`` rows of terraced houses are placed first, then ``n_buildings`` isolated buildings of 3-10 px, all
    clear of roads and of each other by at least 1 px (a group that finds no room in 20 tries is skipped)."""
    sigma = max(3.0, min(height, width) / 24)
    fields = ndimage.gaussian_filter(rng.standard_normal((4, height, width)), sigma=(0, sigma, sigma))
    labels = fields.argmax(axis=0).astype(np.uint8)
    roads = np.zeros((height, width), bool)
    for _ in range(n_roads if n_roads is not None else max(2, (height + width) // 256)):
        if rng.random() < 0.5:  # west-east road
            rr, cc = _line(int(rng.integers(height)), 0, int(rng.integers(height)), width - 1)
        else:  # north-south road
            rr, cc = _line(0, int(rng.integers(width)), height - 1, int(rng.integers(width)))
        roads[rr, cc] = True
    blocked = ndimage.binary_dilation(roads, iterations=1)
    labels[blocked] = ROAD
    instances = np.zeros((height, width), np.uint32)
    for _ in range(n_rows if n_rows is not None else max(2, height * width // 8000)):
        _place(instances, blocked, _row_of_houses(rng), rng)
    for _ in range(n_buildings if n_buildings is not None else max(2, height * width // 8000)):
        bh, bw = (int(v) for v in rng.integers(3, 11, 2))
        _place(instances, blocked, [(0, 0, bh, bw)], rng)
    labels[instances > 0] = BUILDING
    return labels, instances


def synthetic_image(labels: np.ndarray, bands: int, rng: np.random.Generator, seed: int, noise: float = 0.012,
                    tone: np.ndarray | None = None) -> np.ndarray:
    """Reflectance ``(bands, h, w)`` float32: class signature (times ``tone`` ``(h, w)`` where given, e.g. a roof
    tone per building) x smooth texture + Gaussian noise (std ``noise``)."""
    sig = _signatures(bands, seed)[labels].transpose(2, 0, 1)  # (C, h, w)
    if tone is not None:
        sig = sig * tone[None]
    texture = 1.0 + 0.08 * ndimage.gaussian_filter(rng.standard_normal(labels.shape), 2.0)
    jitter = rng.normal(0.0, noise, sig.shape)
    return np.clip(sig * texture[None] + jitter, 0.001, 1.0).astype(np.float32)


def _profile(height: int, width: int, crs: str, pixel_size: float, origin: Sequence[float]) -> dict:
    transform = Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1])
    return dict(driver="GTiff", height=height, width=width, crs=crs, transform=transform, tiled=True,
                blockxsize=256, blockysize=256, compress="deflate")


def _write(paths: Sequence[str | Path | None], profile: dict, dtype: str, bands: int,
           blocks: Iterable[tuple[Window, np.ndarray, np.ndarray, np.ndarray | None]], overwrite: bool) -> None:
    """Write the image (band names, nodata of ``dtype``), the labels (class colour table, nodata 255) and the
    instances at ``paths`` (None: not written) from ``blocks`` of ``(window, image (C, h, w), labels (h, w),
    instances (h, w) or None)``, all files or none."""
    kinds = [{"count": bands, "dtype": dtype, "nodata": DTYPES[dtype][1]},
             {"count": 1, "dtype": "uint8", "nodata": LABEL_NODATA}, {"count": 1, "dtype": "uint32"}]
    with Staging([Path(p) for p in paths if p], overwrite) as stage:
        with contextlib.ExitStack() as files:
            out = [p and files.enter_context(rasterio.open(stage.path(Path(p)), "w", **kind, **profile))
                   for p, kind in zip(paths, kinds, strict=True)]
            if out[1]:
                out[1].write_colormap(1, DEFAULT_CLASSES.colormap())  # before the pixels (libtiff fixes it then)
            for window, *arrays in blocks:
                for dst, data in zip(out, arrays, strict=True):
                    if dst:
                        dst.write(data if data.ndim == 3 else data[None], window=window)
            # band names after the pixels: GDAL then puts the directory at the end, as the truncation tests expect
            out[0].descriptions = [BAND_NAMES[i] if i < 4 else f"band_{i + 1}" for i in range(bands)]
        stage.commit()


def make_scene(path_img: str | Path, path_lbl: str | Path, height: int = 512, width: int = 512, seed: int = 0,
               bands: int = 4, dtype: str = "uint16", crs: str = "EPSG:32631", pixel_size: float = 10.0,
               origin: Sequence[float] = (500_000.0, 5_000_000.0), nodata_border: int = 8, noise: float = 0.012,
               overwrite: bool = False, path_instances: str | Path | None = None) -> tuple[Path, Path]:
    """Write a synthetic scene: ``bands``-band image of ``dtype`` (uint8, uint16, int16, float32; nodata 0,
    0, -9999, NaN) and a uint8 label raster (nodata 255, class colour table), same CRS/transform/size.
    ``nodata_border`` pixels around the edge are nodata in both; ``noise`` (reflectance std) sets how hard the
    classes are to tell apart. With ``path_instances`` also a uint32 instance raster (0 = no building, one id per
    building; no nodata value; 0 in the nodata border). Each building's signature is scaled by its own roof tone in
    [0.85, 1.15]. Returns the image and label paths."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
    rng = np.random.default_rng(seed)
    labels, instances = synthetic_layout(height, width, rng)  # (h, w) uint8, (h, w) uint32
    tone = rng.uniform(0.85, 1.15, int(instances.max()) + 1).astype(np.float32)
    tone[0] = 1.0  # not a building
    image = _to_dtype(synthetic_image(labels, bands, rng, seed, noise, tone[instances]), dtype)  # (C, h, w)
    border = np.ones((height, width), bool)
    b = max(int(nodata_border), 0)
    border[b : height - b, b : width - b] = False
    image[:, border] = DTYPES[dtype][1]
    labels[border] = LABEL_NODATA
    instances[border] = 0
    _write([path_img, path_lbl, path_instances], _profile(height, width, crs, pixel_size, origin), dtype, bands,
           [(Window(0, 0, width, height), image, labels, instances)], overwrite)
    return Path(path_img), Path(path_lbl)


def make_dataset(root: str | Path, n_scenes: int = 2, size: int = 512, seed: int = 0, overwrite: bool = False,
                 **scene_kwargs) -> list[tuple[Path, Path]]:
    """Write ``n_scenes`` adjacent synthetic scenes as ``root/images/scene_XXX.tif`` + ``root/labels/...`` +
    ``root/instances/...`` (building instances) and the lecture classes as ``root/classes.json``. Extra keyword
    arguments go to ``make_scene``. Returns the (image, label) paths."""
    root = Path(root)
    for folder in ("images", "labels", "instances"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    DEFAULT_CLASSES.write_json(root / "classes.json", overwrite=overwrite)
    pixel = float(scene_kwargs.pop("pixel_size", 10.0))
    x0, y0 = scene_kwargs.pop("origin", (500_000.0, 5_000_000.0))
    return [make_scene(root / "images" / f"scene_{i:03d}.tif", root / "labels" / f"scene_{i:03d}.tif", size, size,
                       seed=seed + i, pixel_size=pixel, origin=(x0 + i * size * pixel, y0), overwrite=overwrite,
                       path_instances=root / "instances" / f"scene_{i:03d}.tif", **scene_kwargs)
            for i in range(n_scenes)]


def _large_labels(window: Window, waves: list, roads: list) -> np.ndarray:
    """Labels of ``window`` from global smooth functions of the pixel position, so blocks join seamlessly."""
    rows = np.arange(window.row_off, window.row_off + window.height)[:, None]  # (h, 1)
    cols = np.arange(window.col_off, window.col_off + window.width)[None, :]  # (1, w)
    fields = np.zeros((4, window.height, window.width))
    for amp, fy, fx, phase in waves:  # sin(y + x) = sin(y) cos(x) + cos(y) sin(x): separable, cheap
        y = fy[:, None, None] * rows[None] + phase[:, None, None]  # (4, h, 1)
        x = fx[:, None, None] * cols[None]  # (4, 1, w)
        fields += amp[:, None, None] * (np.sin(y) * np.cos(x) + np.cos(y) * np.sin(x))
    labels = fields.argmax(axis=0).astype(np.uint8)
    lot = ((rows // 64 * 73856093) ^ (cols // 64 * 19349663)) % 7 == 0  # a building on about 1 in 7 lots
    labels[lot & (rows % 64 >= 20) & (rows % 64 < 30) & (cols % 64 >= 24) & (cols % 64 < 38)] = BUILDING
    for a, b, c in roads:  # |a*row + b*col + c| < 1.5: lines 3 px wide
        labels[np.abs(a * rows + b * cols + c) < 1.5] = ROAD
    return labels


def make_large_raster(path_img: str | Path, height: int, width: int, path_lbl: str | Path | None = None, bands: int = 4,
                      dtype: str = "uint16", seed: int = 0, block: int = 512, crs: str = "EPSG:32631",
                      pixel_size: float = 10.0, origin: Sequence[float] = (500_000.0, 5_000_000.0),
                      compress: str | None = "deflate", overwrite: bool = False) -> Path:
    """Write a large synthetic scene block by block (memory stays ~ one ``block x block`` tile), for memory and
    speed benchmarks of tiled inference. Same classes/spectra as ``make_scene``; optional matching labels."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
    rng = np.random.default_rng(seed)
    waves = [tuple(rng.uniform(lo, hi, 4) for lo, hi in ((0.5, 1), (-0.02, 0.02), (-0.02, 0.02), (0, 2 * np.pi)))
             for _ in range(3)]
    roads = []
    for t in rng.uniform(0, np.pi, 6):
        a, b = np.cos(t), np.sin(t)
        corners = (0.0, a * height, b * width, a * height + b * width)
        roads.append((a, b, -rng.uniform(min(corners), max(corners))))
    profile = _profile(height, width, crs, pixel_size, origin)
    profile.update(blockxsize=block, blockysize=block, compress=compress or "none", bigtiff="IF_SAFER")

    def blocks():
        for r in range(0, height, block):
            for c in range(0, width, block):
                window = Window(c, r, min(block, width - c), min(block, height - r))
                labels, rng = _large_labels(window, waves, roads), np.random.default_rng([seed, r, c])
                yield window, _to_dtype(synthetic_image(labels, bands, rng, seed), dtype), labels, None

    _write([path_img, path_lbl, None], profile, dtype, bands, blocks(), overwrite)
    return Path(path_img)
