"""Benchmarks of issue 21 ("map a country"), the land-cover rows of ``segsuite benchmark throughput``:

- :func:`mosaic_runs`: memory added and speed of the predict pipeline with the no-compute model
  (:class:`~.benchmark.BandCopy`) on VRT mosaics of one 4096^2 GeoTIFF repeated on a grid (8192^2: 2 x 2 tiles;
  65,536^2: 16 x 16 = 256 tiles): each run in a fresh child process (:func:`~.benchmark.run_child`), so the peak is
  the run's own. The VRT reuses one file so that the disk holds 128 MiB, not 32 GiB; GDAL decodes its blocks anew
  for every tile all the same (its block cache is 64 MiB).
- :func:`training_speed`: training windows per second from a large GeoTIFF (the training dataset's windowed reads)
  against the same windows already in memory (the same code, its two readers answered from a dict), interleaved;
  each round draws fresh windows (as training does), so GDAL's block cache (run with ``GDAL_CACHEMAX=64``, as the
  inference figures) does not hold them from an earlier round.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors

from segsuite.core.benchmark import Timing, timeit
from segsuite.domains.landcover import samples
from segsuite.domains.landcover.mosaic import _probe, vrt_xml
from segsuite.domains.landcover.sampling import random_window
from segsuite.domains.landcover.synthetic import make_large_raster
from segsuite.scripts.benchmarks.landcover import BANDS, run_child


def repeated_vrt(tile: Path, n: int, out: Path) -> Path:
    """A VRT of ``tile`` repeated on an ``n x n`` grid (tile i, j placed i tile heights down, j widths across)."""
    info = _probe(str(tile))
    a, _, x0, _, e, y0 = info.transform
    infos = [dataclasses.replace(info, transform=(a, 0.0, x0 + j * info.width * a, 0.0, e, y0 + i * info.height * e))
             for i in range(n) for j in range(n)]
    out.write_text(vrt_xml(infos))
    return out


def mosaic_runs(tmp: Path, tile_size: int = 4096, grids: tuple[int, ...] = (2, 16), tile=(512, 512),
                overlap=(64, 64), batch_size: int = 8, threads: int | None = None,
                timeout: float = 3600) -> dict[int, dict[str, Any]]:
    """Per grid ``n``: the child's ``peak_mb``, ``base_mb``, ``seconds`` and ``mpx`` for the pipeline (band auto, the
    no-compute model) on the ``n x n`` mosaic of one ``tile_size``^2 scene."""
    scene = make_large_raster(tmp / "tile.tif", tile_size, tile_size, bands=BANDS, overwrite=True)
    runs = {}
    for n in grids:
        vrt = repeated_vrt(scene, n, tmp / f"mosaic_{n}.vrt")
        out = tmp / f"mosaic_{n}_pred.tif"
        run = run_child("pipeline", timeout=timeout, raster=str(vrt), output=str(out), model="copy", tile=list(tile),
                        overlap=list(overlap), batch_size=batch_size, device="cpu", threads=threads)
        out.unlink(missing_ok=True)
        runs[n] = {**run, "mpx": (n * tile_size) ** 2 / 1e6}
    return runs


def _windows(rect, patch: int, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [random_window(rect, (patch, patch), rng) for _ in range(n)]


def training_speed(tmp: Path, size: int = 20_000, patch: int = 256, n: int = 200, repeats: int = 3
                   ) -> dict[str, Timing]:
    """Interleaved seconds for ``n`` random ``patch``-sized training samples (read, normalise, targets, D4
    augmentation) from a ``size``^2 GeoTIFF scene and from the same windows held in memory."""
    from segsuite.domains.landcover.dataset import build_datasets

    root = tmp / "train_data"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    if not _has_scene(root / "labels" / "big.tif", size):  # a scene of this size from an earlier run is reused
        make_large_raster(root / "images" / "big.tif", size, size, root / "labels" / "big.tif", bands=BANDS,
                          overwrite=True)
    ds = build_datasets(str(root), patch_size=patch, holdout_fraction=0.05, holdout_mode="strip",
                        samples_per_epoch=n, stats_max_pixels=1_000_000)["train"]
    scene, rect = ds._rects[0]  # the scene less a 5 % strip held out
    sets = [_windows(rect, patch, n, seed) for seed in range(repeats + 1)]  # one per round (and the warm-up)
    rng = np.random.default_rng(0)
    rounds = {"file": iter(sets), "memory": iter(sets)}

    def draw(windows) -> None:
        for w in windows:
            image, mask, _ = ds._read(scene, w, own=rect, region=rect)
            samples._sample(*samples.augment_d4(image, mask, rng))

    images = {_key(w): samples.read_window(ds._rasters.get(scene.image), w, ds.bands, ds.alpha_is_mask)
              for windows in sets for w in windows}
    labels = {_key(w): samples.read_label_window(ds._rasters.get(scene.label), w) for windows in sets for w in windows}

    def from_memory() -> None:
        real = samples.read_window, samples.read_label_window
        samples.read_window = lambda src, w, *a: tuple(x.copy() for x in images[_key(w)])
        samples.read_label_window = lambda src, w: tuple(x.copy() for x in labels[_key(w)])
        try:
            draw(next(rounds["memory"]))
        finally:
            samples.read_window, samples.read_label_window = real

    return timeit({f"training windows from a {size}^2 GeoTIFF": lambda: draw(next(rounds["file"])),
                   "the same windows in memory": from_memory}, repeats=repeats)


def _has_scene(label: Path, size: int) -> bool:
    """Whether ``label`` (written last) is a ``size``^2 raster."""
    try:
        with rasterio.open(label) as src:
            return src.shape == (size, size)
    except (rasterio.errors.RasterioIOError, OSError):
        return False


def _key(window) -> tuple[int, int, int, int]:
    return int(window.col_off), int(window.row_off), int(window.width), int(window.height)

