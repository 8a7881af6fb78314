"""Benchmarks of issue 21 ("map a country"), the land-cover rows of ``segsuite benchmark throughput``:

- :func:`mosaic_runs`: memory added and speed of the predict pipeline with the no-compute model
  (:class:`~.benchmark.BandCopy`) on VRT mosaics of one 4096^2 GeoTIFF repeated on a grid (8192^2: 2 x 2 tiles;
  65,536^2: 16 x 16 = 256 tiles): each run in a fresh child process (:func:`~.benchmark.run_child`), so the peak is
  the run's own. The VRT reuses one file so that the disk holds 128 MiB, not 32 GiB; GDAL decodes its blocks anew
  for every tile all the same (its block cache is 64 MiB).
- :func:`training_speed`: training windows per second from a large GeoTIFF against the same sampler drawing the same
  windows from the scene in memory, interleaved. The training dataset reads a chunk of a few file blocks once and
  serves many windows from it (:class:`segsuite.core.chunks.ChunkSampler`); each round goes on with the stream (as
  an epoch does), so every round reads chunks that no earlier round read; a third copy reads the same stream
  through a warm decoded-pixel cache (``datasets.cache``, :class:`segsuite.core.unpacked.Unpacked`), as later
  epochs, folds and search trials do. :func:`torchgeo_speed`: the same windows
  per second against TorchGeo's ``RasterDataset`` + ``RandomGeoSampler`` (the issue's peer; torchgeo not installed
  with the project).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import torch

from segsuite.core.benchmark import Timing, timeit
from segsuite.core.unpacked import Unpacked
from segsuite.domains.landcover.mosaic import _probe, vrt_xml
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


def same_stream(ds: Any, draws: int, cache: Path) -> tuple[Any, Any, Any]:
    """Three copies of the training dataset ``ds`` that draw the same stream of windows (same seeds): one reads its
    chunks from the file, one from the decoded-pixel cache in ``cache`` (filled beforehand by a fourth copy drawing
    the stream once), the third takes them from arrays in memory, the scene's pixels that the first ``draws``
    windows' chunks hold, read beforehand by a fifth copy (about ``draws / windows_per_chunk`` chunks)."""
    file, cached, filler, memory, recorder = (pickle.loads(pickle.dumps(ds)) for _ in range(5))
    cached.unpacked, filler.unpacked = Unpacked(cache), Unpacked(cache)
    held: dict[tuple[str, int, int, int, int], list[np.ndarray]] = {}
    read = recorder._load  # its own file handles: nothing it reads is in the block cache of the timed copy's
    recorder._load = lambda scene, w: held.setdefault(_key(scene, w), read(scene, w))
    memory._load = lambda scene, w: held[_key(scene, w)]
    for copy in (recorder, filler, file, cached, memory):
        torch.manual_seed(0)  # the same stream in each copy
        _ = copy.sampler().rng
    for i in range(draws):
        recorder[i], filler[i]
    return file, cached, memory


def training_speed(tmp: Path, size: int = 20_000, patch: int = 256, n: int = 400, repeats: int = 3,
                   chunking: tuple[int, int, int] | None = None) -> dict[str, Timing]:
    """Interleaved seconds for ``n`` training samples (chunked window draws, read, normalise, targets, D4) from a
    ``size``^2 GeoTIFF scene, decoded (the first pass over its areas) and through a warm decoded-pixel cache
    (``datasets.cache``: later epochs, folds and trials), and from the same scene in memory: :func:`same_stream`'s
    copies of the training dataset (``chunking``: its ``(chunk_size, windows_per_chunk, chunk_buffer)`` if not the
    defaults; the memory copy holds about 1 GiB at the defaults). GDAL's block cache is 64 MiB, as in the inference
    figures' children."""
    ds = _training_set(tmp, size, patch, n)
    ds.chunking = chunking or ds.chunking
    with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):  # bytes
        file, cached, memory = same_stream(ds, (repeats + 1) * n, tmp / "decoded_cache")
        return timeit({f"training windows from a {size}^2 GeoTIFF": lambda: [file[i] for i in range(n)],
                       "the same, decoded-pixel cache warm": lambda: [cached[i] for i in range(n)],
                       "the same windows, the scene in memory": lambda: [memory[i] for i in range(n)]},
                      repeats=repeats)


def torchgeo_speed(tmp: Path, size: int = 20_000, patch: int = 256, n: int = 400, repeats: int = 3
                   ) -> dict[str, Timing]:
    """Interleaved seconds for ``n`` training windows from the ``size``^2 scene of :func:`training_speed`: ours (the
    training dataset reading its chunks from the file) against TorchGeo's peer on the same files,
    ``RasterDataset`` (image & labels intersected) + ``RandomGeoSampler``, whose samples are raw (ours are also
    normalised, masked and D4-augmented). TorchGeo is a benchmark-only dependency: install it beside the project."""
    from torchgeo.datasets import RasterDataset
    from torchgeo.samplers import RandomGeoSampler

    ours = _training_set(tmp, size, patch, n)
    root = tmp / "train_data"
    images, labels = (type(name, (RasterDataset,), {"filename_glob": "big.tif", "is_image": name == "Images"})
                      for name in ("Images", "Labels"))
    theirs = images(paths=str(root / "images")) & labels(paths=str(root / "labels"))
    sampler = RandomGeoSampler(theirs, size=patch, length=n)
    with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):  # bytes
        return timeit({f"ours, {size}^2 GeoTIFF": lambda: [ours[i] for i in range(n)],
                       "TorchGeo RasterDataset + RandomGeoSampler": lambda: [theirs[q] for q in sampler]},
                      repeats=repeats)


def _training_set(tmp: Path, size: int, patch: int, n: int) -> Any:
    """The training dataset of ``tmp/train_data``: one ``size``^2 scene (made unless an earlier run left one), 5 %
    of it held out; ``n`` windows an epoch."""
    from segsuite.domains.landcover.dataset import build_datasets

    root = tmp / "train_data"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    if not _has_scene(root / "labels" / "big.tif", size):
        make_large_raster(root / "images" / "big.tif", size, size, root / "labels" / "big.tif", bands=BANDS,
                          overwrite=True)
    return build_datasets(str(root), patch_size=patch, holdout_fraction=0.05, holdout_mode="strip",
                          samples_per_epoch=n, stats_max_pixels=1_000_000)["train"]


def _has_scene(label: Path, size: int) -> bool:
    """Whether ``label`` (written last) is a ``size``^2 raster."""
    try:
        with rasterio.open(label) as src:
            return src.shape == (size, size)
    except (rasterio.errors.RasterioIOError, OSError):
        return False


def _key(scene: Any, window: Any) -> tuple[str, int, int, int, int]:
    return scene.stem, int(window.col_off), int(window.row_off), int(window.width), int(window.height)
