"""Tiled GeoTIFF inference benchmark, in one run on one model and one raster:

1. pipeline (``RasterSource`` -> ``sliding_window`` -> GeoTIFF writer) vs the bare model's forward on the same
   pre-built tile batches, in the same process: throughput ratio (goal >= 0.9);
2. the pipeline vs MONAI's ``sliding_window_inference`` (same tile, overlap, Gaussian blending) on an in-memory
   copy of the raster: throughput ratio (goal >= 1) and peak-memory ratio (goal: a fraction).

Each side runs in its own subprocess (``python -m domains.landcover.benchmark --child ...``) so its peak memory is
the process's RSS high-water mark (``getrusage``, which sees torch's allocations as well as numpy's and GDAL's).
"Added" memory is that peak minus the peak after imports, model build and one warm-up batch, i.e. what the image
itself costs. Both sides use the same weights (same seed) and the same normalised input values.
"""

from __future__ import annotations

import argparse
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
import torch
from torch import nn

from core.inference import TilePredictor, grid_windows
from domains.landcover.classes import DEFAULT_CLASSES
from domains.landcover.inference import RasterSource
from domains.landcover.predict import predict_raster
from domains.landcover.synthetic import make_large_raster

ROOT = Path(__file__).resolve().parents[2]
BANDS = 4
SIZES = {True: (1024, 1024), False: (4096, 4096)}  # quick: (height, width); full
GDAL_CACHE_MB = 64  # GDAL's block cache is bounded (default 5% of RAM); fixed here so runs compare


def make_model(kind: str, in_channels: int = BANDS, classes: int = len(DEFAULT_CLASSES), seed: int = 0) -> nn.Module:
    """``unet``: Unet/resnet18 as trained by default (realistic, CPU-affordable); ``tiny``: one 3x3 conv."""
    torch.manual_seed(seed)
    if kind == "unet":
        from core.models import create_model

        return create_model("unet", "resnet18", in_channels=in_channels, classes=classes).eval()
    if kind == "tiny":
        return nn.Conv2d(in_channels, classes, 3, padding=1).eval()
    raise ValueError(f"unknown benchmark model {kind!r}; use unet or tiny")


def bench_meta(bands: int = BANDS) -> dict[str, Any]:
    """A checkpoint-like ``meta`` for the synthetic uint16 reflectance rasters."""
    return {
        "bands": list(range(1, bands + 1)), "band_names": [f"band_{b}" for b in range(1, bands + 1)],
        "image_band_count": bands, **DEFAULT_CLASSES.to_meta(),
        "normalization": {"mean": [1500.0] * bands, "std": [1000.0] * bands},
    }


def _peak_mb() -> float:
    """This process's RSS high-water mark in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm(predictor: TilePredictor, tile: tuple[int, int], batch_size: int) -> None:
    predictor(torch.zeros(batch_size, BANDS, *tile))
    _sync(predictor.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child_pipeline(raster: str, output: str, model: str, tile: tuple[int, int], overlap: tuple[int, int],
                   batch_size: int, bare: bool, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Time (and peak memory of) the streaming pipeline; then, if ``bare``, the model alone on the same tiles
    (each batch built untimed, then only the forward timed). ``threads``: torch's CPU threads (default: its own)."""
    if threads:
        torch.set_num_threads(threads)
    predictor = TilePredictor(make_model(model), device)
    _warm(predictor, tile, batch_size)
    base = _peak_mb()
    with RasterSource(raster, bench_meta()) as source:
        start = time.perf_counter()
        predict_raster(predictor, source, Path(output), DEFAULT_CLASSES, tile=tile, overlap=overlap,
                       batch_size=batch_size, blend="gaussian", progress=False)
        result = {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb(), "base_mb": base,
                  "pixels": source.shape[0] * source.shape[1]}
        if bare:
            windows = grid_windows(*source.shape, tile, overlap)
            seconds = 0.0
            with torch.inference_mode():
                for i in range(0, len(windows), batch_size):  # the same tiles and batches as the pipeline
                    batch = torch.from_numpy(np.stack([source.read(w) for w in windows[i : i + batch_size]]))
                    batch = batch.to(predictor.device)
                    _sync(predictor.device)
                    start = time.perf_counter()
                    predictor.model(batch)
                    _sync(predictor.device)
                    seconds += time.perf_counter() - start
            result.update(bare_seconds=seconds, tiles=len(windows))
    return result


def child_monai(raster: str, model: str, tile: tuple[int, int], overlap: tuple[int, int],
                batch_size: int, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Time MONAI's ``sliding_window_inference`` (logits -> class ids) on an in-memory copy of the raster; the
    peak memory includes that copy. Reading the raster is not timed, and nothing is written."""
    from monai.inferers import sliding_window_inference

    if threads:
        torch.set_num_threads(threads)
    predictor = TilePredictor(make_model(model), device)
    _warm(predictor, tile, batch_size)
    base = _peak_mb()
    with RasterSource(raster, bench_meta()) as source:
        image = torch.from_numpy(source.read((0, 0, *source.shape)))[None]  # (1, C, H, W), normalised
    image = image.to(predictor.device)
    _sync(predictor.device)
    start = time.perf_counter()
    with torch.inference_mode():
        logits = sliding_window_inference(image, tile, batch_size, predictor.model,
                                          overlap=[o / t for o, t in zip(overlap, tile)], mode="gaussian",
                                          sigma_scale=0.125)
        classes = logits[0].argmax(0).to(torch.uint8).cpu().numpy()  # (H, W)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb(), "base_mb": base,
            "pixels": int(classes.size)}


def run_child(kind: str, timeout: float = 600, gdal_cache_mb: int = GDAL_CACHE_MB, **kwargs: Any) -> dict[str, Any]:
    """Run ``child_<kind>(**kwargs)`` in a fresh Python process (GDAL block cache fixed to ``gdal_cache_mb``)
    and return its result."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "GDAL_CACHEMAX": str(gdal_cache_mb), "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-m", "domains.landcover.benchmark", "--child", kind, json.dumps(kwargs)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def run(quick: bool = False, model: str = "unet", tile: tuple[int, int] = (256, 256),
        overlap: tuple[int, int] = (64, 64), batch_size: int = 8, device: str = "cpu",
        size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Benchmark the land-cover tiled inference (see the module docstring); prints a table, returns the numbers.
    ``quick``: a 1024 x 1024 raster (under a minute on 2 CPU cores); else 4096 x 4096 (or ``size``)."""
    height, width = size or SIZES[quick]
    with tempfile.TemporaryDirectory(prefix="landcover_bench_") as tmp:
        raster = Path(tmp) / "scene.tif"
        make_large_raster(raster, height, width, bands=BANDS)
        common = dict(raster=str(raster), model=model, tile=list(tile), overlap=list(overlap), batch_size=batch_size,
                      device=device)
        ours = run_child("pipeline", output=str(Path(tmp) / "pred.tif"), bare=True, **common)
        monai = run_child("monai", **common)
    mpx = height * width / 1e6
    out = {
        "raster": [height, width], "bands": BANDS, "model": model, "tile": list(tile), "overlap": list(overlap),
        "batch_size": batch_size, "tiles": ours["tiles"], "device": device, "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],  # other work on the machine makes the timings noisy
        "pipeline_mpx_s": mpx / ours["seconds"], "bare_model_mpx_s": mpx / ours["bare_seconds"],
        "monai_mpx_s": mpx / monai["seconds"],
        "pipeline_peak_mb": ours["peak_mb"], "monai_peak_mb": monai["peak_mb"],
        "pipeline_added_mb": ours["peak_mb"] - ours["base_mb"], "monai_added_mb": monai["peak_mb"] - monai["base_mb"],
    }
    out["pipeline_vs_bare"] = out["pipeline_mpx_s"] / out["bare_model_mpx_s"]
    out["pipeline_vs_monai_speed"] = out["pipeline_mpx_s"] / out["monai_mpx_s"]
    out["pipeline_vs_monai_peak_memory"] = out["pipeline_peak_mb"] / out["monai_peak_mb"]
    out["pipeline_vs_monai_added_memory"] = out["pipeline_added_mb"] / max(out["monai_added_mb"], 1e-9)
    print(f"land-cover tiled inference: {height}x{width} px, {BANDS} bands uint16, {model}, tile {list(tile)}, "
          f"overlap {list(overlap)}, batch {batch_size}, {ours['tiles']} tiles, "
          f"{device} ({out['torch_threads']} CPU threads, load average {out['load_average']:.1f})")
    print(_table([
        ("measure", "value", "goal"),
        ("pipeline (file -> file)", f"{out['pipeline_mpx_s']:.3f} Mpx/s", ""),
        ("bare model, same tiles", f"{out['bare_model_mpx_s']:.3f} Mpx/s", ""),
        ("MONAI in memory", f"{out['monai_mpx_s']:.3f} Mpx/s", ""),
        ("pipeline / bare model", f"{out['pipeline_vs_bare']:.3f}", ">= 0.9"),
        ("pipeline / MONAI speed", f"{out['pipeline_vs_monai_speed']:.3f}", ">= 1"),
        ("peak RSS pipeline / MONAI", f"{out['pipeline_peak_mb']:.0f} / {out['monai_peak_mb']:.0f} MiB "
                                      f"= {out['pipeline_vs_monai_peak_memory']:.3f}", "< 1"),
        ("added by the image", f"{out['pipeline_added_mb']:.0f} / {out['monai_added_mb']:.0f} MiB "
                               f"= {out['pipeline_vs_monai_added_memory']:.3f}", "a fraction"),
    ]))
    return out


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 x 1024 raster instead of 4096 x 4096")
    parser.add_argument("--model", default="unet", choices=["unet", "tiny"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="raster size")
    parser.add_argument("--tile", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--overlap", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        kwargs = json.loads(ns.args)
        kwargs = {k: tuple(v) if k in ("tile", "overlap") else v for k, v in kwargs.items()}
        print(json.dumps({"pipeline": child_pipeline, "monai": child_monai}[ns.child](**kwargs)))
        return
    run(quick=ns.quick, model=ns.model, tile=tuple(ns.tile), overlap=tuple(ns.overlap), batch_size=ns.batch_size,
        device=ns.device, size=tuple(ns.size) if ns.size else None)


if __name__ == "__main__":
    _main()
