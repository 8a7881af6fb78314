"""Tiled GeoTIFF inference benchmark on one model and one raster (``segsuite benchmark landcover``):

1. speed, every contender timed interleaved in this process (:mod:`segsuite.core.benchmark`): the predict pipeline
   (:func:`segsuite.core.pipeline.run_predict` with the land-cover reader and writer, file -> file) against the bare
   model on the same pre-built tile batches in the engine's layout (the limit; goal >= 0.97) and in the contiguous
   one, and MONAI's ``sliding_window_inference`` (same tile, overlap, Gaussian blending) on an in-memory copy of
   the raster (goal >= 1);
2. peak memory of the pipeline and of MONAI, each in a fresh process (``--child``): the RSS high-water mark, which
   sees torch's, numpy's and GDAL's allocations; "added" is that peak minus the peak after imports, model build and
   one warm-up batch, i.e. what the image itself costs (goal: a fraction of MONAI's).

:func:`speed`, :func:`read_speed` and :func:`run_child` are the pieces ``segsuite benchmark throughput``
(:mod:`segsuite.scripts._throughput`) measures the issue's table with.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn

from segsuite.core.benchmark import BARE_BEST, Timing, bare_forwards, print_table, timeit
from segsuite.core.contracts import DataMeta, Job, ModelInfo
from segsuite.core.inference import InferenceOptions, TilePredictor, grid_windows
from segsuite.core.pipeline import run_predict
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.reader import GeoTiffReader, RasterSource
from segsuite.domains.landcover.synthetic import make_large_raster
from segsuite.domains.landcover.writer import GeoTiffWriter

ROOT = Path(__file__).resolve().parents[2]
BANDS = 4
SIZES = {True: (1024, 1024), False: (4096, 4096)}  # quick: (height, width); full
GDAL_CACHE_MB = 64  # MONAI's child reads the scene whole: GDAL's cache fixed there (default 5% of RAM) so runs compare


class BandCopy(nn.Module):
    """A no-compute model: its first input band copied to ``classes`` channels, ``(B, C, h, w) -> (B, K, h, w)``
    (one memory copy, as writing a real model's output costs; no arithmetic), so that a run times everything but the
    net. The copy goes into one output buffer kept from batch to batch, as a GPU's caching allocator gives a model's
    output: a fresh 50 MiB tensor per batch on a CPU faults its pages in one by one, which is the allocator's cost
    (it made up a third of this "no-compute" model's run). The next batch overwrites it, so it suits tiled runs
    only (the merger has copied each window's output by then)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.out: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.classes, *x.shape[2:])
        if self.out is None or self.out.shape[0] < shape[0] or self.out.shape[1:] != shape[1:]:
            self.out = torch.empty(shape, dtype=x.dtype, device=x.device)
        return self.out[: shape[0]].copy_(x[:, :1].expand(shape))


def make_model(kind: str, in_channels: int = BANDS, classes: int = len(DEFAULT_CLASSES), seed: int = 0) -> nn.Module:
    """``unet``: Unet/resnet18 as trained by default (realistic, CPU-affordable); ``tiny``: one 3x3 conv;
    ``copy``: no compute at all (:class:`BandCopy`)."""
    torch.manual_seed(seed)
    if kind == "unet":
        from segsuite.core.models import create_model

        return create_model("unet", "resnet18", in_channels=in_channels, classes=classes,
                            encoder_weights=None).eval()
    if kind == "tiny":
        return nn.Conv2d(in_channels, classes, 3, padding=1).eval()
    if kind == "copy":
        return BandCopy(classes).eval()
    raise ValueError(f"unknown benchmark model {kind!r}; use unet, tiny or copy")


def bench_job(model: str, tile: tuple[int, int], overlap: tuple[int, int], batch_size: int, device: str,
              amp: bool = False, band: int | str | None = "auto") -> Job:
    """A job on the synthetic uint16 reflectance rasters (a checkpoint-like meta), overwriting its output;
    ``amp``: bfloat16 autocast (CUDA); ``band``: column bands as the product's default (auto)."""
    meta = DataMeta.from_dict({"in_channels": BANDS, "num_classes": len(DEFAULT_CLASSES), **DEFAULT_CLASSES.to_meta(),
                               "bands": list(range(1, BANDS + 1)), "image_band_count": BANDS,
                               "normalization": {"mean": [1500.0] * BANDS, "std": [1000.0] * BANDS}})
    info = ModelInfo(TilePredictor(make_model(model), device, amp), meta, len(DEFAULT_CLASSES), False)
    return Job(info, options=InferenceOptions(tuple(tile), tuple(overlap), batch_size, "gaussian", band=band),
               overwrite=True)


def pipeline(job: Job, raster: Path, output: Path) -> None:
    """The predict pipeline, class raster only (no area report, no preview)."""
    run_predict(GeoTiffReader(), GeoTiffWriter(report=False, preview=False), job, raster, output)


def plain_net(job: Job) -> nn.Module:
    """The job's network as users have it (the predictor runs its own in channels-last layout): MONAI's."""
    return copy.deepcopy(job.model.predictor.model).to(memory_format=torch.contiguous_format).eval()


def monai(job: Job, image: torch.Tensor, net: nn.Module | None = None) -> None:
    """MONAI's sliding window on the normalised image ``(1, C, H, W)`` in memory: logits -> class ids."""
    from monai.inferers import sliding_window_inference

    options = job.options
    with torch.inference_mode():
        logits = sliding_window_inference(image, options.tile, options.batch_size, net or plain_net(job),
                                          overlap=[o / t for o, t in zip(options.overlap, options.tile)],
                                          mode="gaussian", sigma_scale=0.125)
        logits[0].argmax(0).to(torch.uint8).cpu()


def read_all(job: Job, raster: Path) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The normalised raster ``(1, C, H, W)`` on the device, and the pipeline's tiles batched as it batches them."""
    tile, overlap, batch_size = job.options.tile, job.options.overlap, job.options.batch_size
    with RasterSource(raster, job.model.meta) as source:
        image = torch.from_numpy(source.read((0, 0, *source.shape)))[None].to(job.model.predictor.device)
        tiles = [source.read(w) for w in grid_windows(*source.shape, tile, overlap)]
    return image, [torch.from_numpy(np.stack(tiles[i : i + batch_size])) for i in range(0, len(tiles), batch_size)]


def speed(job: Job, raster: Path, output: Path, repeats: int = 3, warmup: int = 1) -> tuple[dict[str, Timing], int]:
    """Interleaved seconds of the bare model on the pipeline's tiles in memory (in the engine's layout, the limit, and
    contiguous), the pipeline (file -> file) and MONAI's sliding window on the normalised image in memory; and the
    number of windows. ``warmup=0``: one batch
    through the model instead of an untimed round of every contender (for scenes where a round takes minutes)."""
    image, batches = read_all(job, raster)
    net = plain_net(job)
    job.model.predictor(batches[0])
    windows = sum(len(b) for b in batches)
    with contextlib.redirect_stderr(io.StringIO()):  # no progress bars between the tables
        predictor = job.model.predictor
        contenders = {**bare_forwards(predictor.model, batches, predictor.device, predictor.amp),
                      "pipeline (file -> file)": lambda: pipeline(job, raster, output),
                      "MONAI sliding window in memory": lambda: monai(job, image, net)}
        return timeit(contenders, repeats=repeats, warmup=warmup), windows


def bare_reads(raster: Path, job: Job) -> None:
    """rasterio alone: every window of the job's grid read once, all of the model's bands in the file's dtype."""
    bands = list(job.model.meta["bands"])
    with rasterio.open(raster) as src:
        for w in grid_windows(src.height, src.width, job.options.tile, job.options.overlap):
            src.read(bands, window=rasterio.windows.Window(w.col, w.row, w.width, w.height))


def read_speed(job: Job, raster: Path, output: Path, repeats: int = 3) -> dict[str, Timing]:
    """Interleaved seconds of bare rasterio reads of the job's windows and of the whole pipeline (file -> file) with
    ``job``'s model (meant for a no-compute one: ``make_model("copy")``), in one process, so one GDAL block cache."""
    with contextlib.redirect_stderr(io.StringIO()):
        return timeit({"bare rasterio reads, same windows": lambda: bare_reads(raster, job),
                       "pipeline (file -> file), no-compute model": lambda: pipeline(job, raster, output)},
                      repeats=repeats)


def _peak_mb() -> float:
    """This process's RSS high-water mark in MiB: VmHWM (getrusage's starts at the parent's RSS when it forked)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    peak = next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), None)
    return (peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024  # KiB


def child(kind: str, raster: str, output: str = "", model: str = "unet", tile=(256, 256), overlap=(64, 64),
          batch_size: int = 8, device: str = "cpu", threads: int | None = None,
          band: int | str | None = "auto") -> dict[str, Any]:
    """Peak memory and seconds of one ``pipeline`` or ``monai`` run in this (fresh) process."""
    if threads:
        torch.set_num_threads(threads)
    job = bench_job(model, tile, overlap, batch_size, device, band=band)
    job.model.predictor(torch.zeros(batch_size, BANDS, *tile))  # warm-up batch
    base, start = _peak_mb(), time.perf_counter()
    if kind == "pipeline":
        pipeline(job, Path(raster), Path(output))
    else:
        monai(job, read_all(job, Path(raster))[0])
    return {"peak_mb": _peak_mb(), "base_mb": base, "seconds": time.perf_counter() - start}


def run_child(kind: str, timeout: float = 600, gdal_cache_mb: int = GDAL_CACHE_MB, **kwargs: Any) -> dict[str, Any]:
    """``child(kind, **kwargs)`` in a fresh Python process; GDAL's block cache fixed to ``gdal_cache_mb`` for MONAI's
    run, left to the product for ours (the land-cover reader sizes it to what the engine reads again)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    env.update(PYTHONPATH=path, **({"GDAL_CACHEMAX": str(gdal_cache_mb)} if kind != "pipeline" else {}))
    proc = subprocess.run([sys.executable, "-m", "segsuite.scripts.benchmarks.landcover", json.dumps({"kind": kind,
                                                                                                     **kwargs})],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, model: str = "unet", tile: tuple[int, int] = (256, 256),
        overlap: tuple[int, int] = (64, 64), batch_size: int = 8, device: str = "cpu",
        size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Benchmark the land-cover tiled inference (see the module docstring); prints tables, returns the numbers.
    ``quick``: a 1024 x 1024 raster (a few minutes on 2 CPU cores); else 4096 x 4096 (or ``size``)."""
    height, width = size or SIZES[quick]
    common = dict(model=model, tile=list(tile), overlap=list(overlap), batch_size=batch_size, device=device)
    with tempfile.TemporaryDirectory(prefix="landcover_bench_") as tmp:
        raster, output = Path(tmp) / "scene.tif", Path(tmp) / "pred.tif"
        make_large_raster(raster, height, width, bands=BANDS)
        job = bench_job(model, tile, overlap, batch_size, device)
        timings, windows = speed(job, raster, output)
        ours = run_child("pipeline", raster=str(raster), output=str(Path(tmp) / "child.tif"), **common)
        theirs = run_child("monai", raster=str(raster), **common)
    mpx = height * width / 1e6
    title = (f"land-cover tiled inference: {height}x{width} px, {BANDS} bands uint16, {model}, tile {list(tile)}, "
             f"overlap {list(overlap)}, batch {batch_size}, {windows} windows, {device} "
             f"({torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f})")
    relative = print_table(title, timings, BARE_BEST, {"pipeline (file -> file)": 0.97},
                           unit="Mpx/s", work=mpx)
    bare, _, ours_s, monai_s = (relative[name] for name in timings)
    added = (ours["peak_mb"] - ours["base_mb"], theirs["peak_mb"] - theirs["base_mb"])
    out = {"raster": [height, width], "model": model, "tile": list(tile), "overlap": list(overlap),
           "batch_size": batch_size, "device": device,
           **{f"{k}_mpx_s": mpx / t.median for k, t in zip(("bare_model", "bare_contiguous", "pipeline", "monai"),
                                                              timings.values())},
           "pipeline_vs_bare": ours_s / bare, "pipeline_vs_monai_speed": ours_s / monai_s,
           "pipeline_peak_mb": ours["peak_mb"], "monai_peak_mb": theirs["peak_mb"],
           "pipeline_vs_monai_peak_memory": ours["peak_mb"] / theirs["peak_mb"],
           "pipeline_added_mb": added[0], "monai_added_mb": added[1],
           "pipeline_vs_monai_added_memory": added[0] / max(added[1], 1e-9)}
    print(f"  pipeline / MONAI speed {out['pipeline_vs_monai_speed']:.3f} (goal >= 1); peak RSS pipeline / MONAI "
          f"{ours['peak_mb']:.0f} / {theirs['peak_mb']:.0f} MiB = {out['pipeline_vs_monai_peak_memory']:.3f} (< 1); "
          f"added by the image {added[0]:.0f} / {added[1]:.0f} MiB = {out['pipeline_vs_monai_added_memory']:.3f}")
    return out


def _main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):  # a child: '{"kind": "pipeline", ...}'
        print(json.dumps(child(**json.loads(sys.argv[1]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 x 1024 raster instead of 4096 x 4096")
    parser.add_argument("--model", default="unet", choices=["unet", "tiny", "copy"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="raster size")
    parser.add_argument("--tile", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--overlap", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--batch-size", type=int, default=8)
    ns = parser.parse_args()
    run(ns.quick, ns.model, tuple(ns.tile), tuple(ns.overlap), ns.batch_size, ns.device, ns.size and tuple(ns.size))


if __name__ == "__main__":
    _main()
