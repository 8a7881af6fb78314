"""Throughput of road-scene inference on full-resolution frames: the predict path against the bare network.

Frames are synthetic driving scenes in Cityscapes layout, 2048x1024 PNGs (quick mode: 512x256, fewer); distinct
scenes are rendered once and repeated. The network is the default one (Unet, resnet18, 19 classes) with random
weights (speed does not depend on them). Rows, all on the same frames in one process:

- ``decode only (host)``: decoding and normalising the frames as the predict path does, no network;
- ``bare forward``: ``task.net`` on the frames as pre-built, normalised input batches already on the device;
- ``bare forward + copy``: the same batches built on the host and copied to the device each time;
- ``core engine, in memory``: ``core.inference.sliding_window`` over the same frames held in memory (batches
  assembled on the host, copied, blended), classes back on the host: the ceiling of any path through the core;
- ``predict path``: ``predict.infer`` from the PNG files: decode, normalise, tiled inference (one window per frame
  at the default tile), upsample, argmax, labels back on the host;
- ``predict() to files``: the whole ``predict`` call, also writing label, colour and overlay PNGs.

Goal: ``predict path`` at >= 0.9 of ``bare forward``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.inference import TilePredictor, sliding_window
from core.inference.engine import ArraySource
from core.task import SegmentationTask

from .datasets import build_datasets
from .predict import FrameReader, default_workers, infer, load_frame, predict
from .synthetic import make_dataset

MODEL = {"_target_": "core.models.create_model", "arch": "Unet", "encoder_name": "resnet18", "encoder_weights": None,
         "in_channels": 3, "classes": 19}


def _frames(root: Path, size: tuple[int, int], count: int, distinct: int) -> tuple[list[Path], dict[str, Any]]:
    """``count`` PNG frames of ``size`` (H, W) (``distinct`` scenes repeated) and the training meta of the set."""
    make_dataset(root / "scenes", n_train=1, n_val=min(distinct, count), size=size, seed=0)
    scenes = sorted((root / "scenes" / "leftImg8bit" / "val").rglob("*.png"))
    frames = []
    for i in range(count):
        frames.append(root / "frames" / f"frame_{i:04d}.png")
        frames[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(scenes[i % len(scenes)], frames[-1])
    return frames, build_datasets(str(root / "scenes"))["train"].meta


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of ``fn()``, the device synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _bare(predictor: TilePredictor, batches: list[torch.Tensor]) -> Callable[[], None]:
    """The network alone on ``batches`` (B, 3, H, W), with the predictor's device and autocast."""

    @torch.inference_mode()
    def forward() -> None:
        for batch in batches:
            with torch.autocast(predictor.device.type, dtype=torch.bfloat16, enabled=predictor.amp):
                predictor.model(batch.to(predictor.device, non_blocking=True))

    return forward


def _engine(predictor: TilePredictor, frames: torch.Tensor, opts: dict[str, Any]) -> None:
    """The core's sliding window over the pre-built frames (N, 3, H, W) held in memory, classes to the host."""
    sources = [ArraySource(frame.numpy()) for frame in frames]
    for _, _, logits, _ in sliding_window(predictor, sources, 19, tile=opts["tile"], overlap=opts["overlap"],
                                          batch_size=opts["batch_size"]):
        logits.argmax(0).cpu()


def _decode_all(paths: list[Path], meta: dict[str, Any], workers: int | None) -> None:
    """Decode and normalise every frame as the predict path does, without the network: the host's ceiling."""
    reader = FrameReader(paths, meta, workers=workers)
    try:
        for i in range(len(paths)):
            reader.frame(i)
            reader.release(i)
    finally:
        reader.close()


def run(quick: bool = False, device: str | None = None, amp: bool = False, batch_size: int = 2,
        workers: int | None = None) -> dict[str, Any]:
    """Measure and print frames/s of each row (best of two timed runs after a warm-up; quick: one) and its
    ratio to the bare forward."""
    size, count, distinct, repeats = ((256, 512), 4, 2, 1) if quick else ((1024, 2048), 48, 4, 2)
    tile = (size[0], size[1])  # whole frames in one window, as the default config does for Cityscapes
    tmp = Path(tempfile.mkdtemp(prefix="road_bench_"))
    try:
        paths, meta = _frames(tmp, size, count, distinct)
        task = SegmentationTask(model=MODEL, num_classes=19, class_names=meta["class_names"], data_meta=meta,
                                domain="road_scene").eval()
        predictor = TilePredictor(task.net, device=device, amp=amp)
        host = torch.from_numpy(np.stack([load_frame(p, meta, keep_rgb=False).input for p in paths]))
        host_batches = list(host.split(batch_size))
        device_batches = [b.to(predictor.device) for b in host_batches]
        opts = dict(tile=tile, overlap=(0, 0), batch_size=batch_size, workers=workers)
        out = iter(range(1_000_000))
        rows: dict[str, Callable[[], Any]] = {
            "decode only (host)": lambda: _decode_all(paths, meta, workers),
            "bare forward": _bare(predictor, device_batches),
            "bare forward + copy": _bare(predictor, host_batches),
            "core engine, in memory": lambda: _engine(predictor, host, opts),
            "predict path": lambda: sum(1 for _ in infer(task, predictor, paths, **opts)),
            "predict() to files": lambda: predict(task, predictor, str(tmp / "frames"), str(tmp / f"out{next(out)}"),
                                                  progress=False, **opts),
        }
        for fn in rows.values():  # warm-up: kernels, autotuning, allocator, file cache
            fn()
        fps = {name: max(count / _timed(fn, predictor.device) for _ in range(repeats)) for name, fn in rows.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare = fps["bare forward"]
    result = {"device": str(predictor.device), "amp": amp, "frame_size": [size[1], size[0]], "frames": count,
              "batch_size": batch_size, "workers": default_workers(workers), "fps": fps,
              "ratio": {k: v / bare for k, v in fps.items()},
              "goal_ratio": 0.9}
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    w, h = result["frame_size"]
    print(f"road_scene inference, {result['frames']} frames of {w}x{h}, batch {result['batch_size']}, "
          f"device {result['device']}, amp {result['amp']}, {result['workers']} host threads")
    print(f"{'':<22}{'frames/s':>10}{'vs bare':>10}")
    for name, fps in result["fps"].items():
        print(f"{name:<22}{fps:>10.2f}{result['ratio'][name]:>10.2f}")
    print(f"goal: predict path >= {result['goal_ratio']} x bare forward")
