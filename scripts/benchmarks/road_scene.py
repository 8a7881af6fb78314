"""Throughput of road-scene prediction on full-resolution frames against the bare network (``segsuite.core.benchmark``).

Frames: synthetic Cityscapes-layout scenes, 2048x1024 PNGs (quick: 512x256, fewer), distinct scenes repeated; the
network: Unet/resnet18 with 19 classes and random weights (speed does not depend on them). Contenders, interleaved:
``decode only`` (the reader's decoding, no network), ``bare forward`` (the network on the same frames, already
decoded in memory, in the engine's channels-last layout: the baseline, the limit; and contiguous, as users have
it), ``core engine, in memory`` (``sliding_window`` over those frames), ``predict
path`` (reader -> engine -> full-frame classes, no files) and ``run_predict to files`` (the whole pipeline writing
label, colour and overlay PNGs). Goal: ``run_predict to files`` >= 0.95 x the best bare forward. :func:`throughput`
times the last against the two bare forwards alone, for ``segsuite benchmark throughput``.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.benchmark import BARE_BEST, Timing, bare_forwards, print_table, timeit
from segsuite.core.contracts import DataMeta, Job, ModelInfo
from segsuite.core.inference import ArraySource, InferenceOptions, TilePredictor, sliding_window
from segsuite.core.models import create_model
from segsuite.core.pipeline import predict_item, run_predict
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.reader import ImageReader, load_frame
from segsuite.domains.road_scene.synthetic import make_dataset
from segsuite.domains.road_scene.writer import SceneWriter


def _frames(root: Path, size: tuple[int, int], n: int, distinct: int) -> tuple[list[Path], dict[str, Any]]:
    """``n`` PNG frames of ``size`` (H, W) (``distinct`` scenes repeated) and the training meta of the set."""
    make_dataset(root / "scenes", n_train=1, n_val=min(distinct, n), size=size, seed=0)
    scenes = sorted((root / "scenes" / "leftImg8bit" / "val").rglob("*.png"))
    (root / "frames").mkdir()
    frames = [root / "frames" / f"frame_{i:04d}.png" for i in range(n)]
    for i, frame in enumerate(frames):
        shutil.copyfile(scenes[i % len(scenes)], frame)
    return frames, build_datasets(str(root / "scenes"))["train"].meta


def _read_all(reader: ImageReader, job: Job, root: Path, predict: bool) -> None:
    """Every frame of ``root`` through the reader (and the engine when ``predict``), as the pipeline does."""
    items = reader.find(root, job)
    for item in items:
        reader.check(item, job)
    for item in items:
        opened = reader.open(item, job)
        if predict:
            for prediction in predict_item(opened, job):
                prediction.classes  # noqa: B018 (already on the host)


def _setup(root: Path, size: tuple[int, int], n: int, distinct: int, batch_size: int, device: str | None,
           amp: bool) -> tuple[torch.nn.Module, Job, list[torch.Tensor], np.ndarray]:
    """Frames under ``root/frames``, the network, its job (whole frames, one window each), the decoded frames
    ``(N, 3, H, W)`` and their batches."""
    paths, meta = _frames(root, size, n, distinct)
    net = create_model("Unet", encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=19).eval()
    predictor = TilePredictor(net, device=device, amp=amp)
    model = ModelInfo(predictor, DataMeta.from_dict(meta), 19, False, "random weights", "road_scene")
    job = Job(model, options=InferenceOptions(tile=size, overlap=(0, 0), batch_size=batch_size))
    host = np.stack([load_frame(p, meta).input for p in paths])  # (N, 3, H, W)
    return net, job, list(torch.from_numpy(host).split(batch_size)), host


LABEL_ONLY = "run_predict, label PNGs only"


def throughput(size: tuple[int, int] = (1024, 2048), n: int = 4, distinct: int = 4, repeats: int = 3,
               device: str | None = None, amp: bool = False, batch_size: int = 2,
               workers: int | None = None) -> tuple[dict[str, Timing], str]:
    """Interleaved seconds of the bare forwards (best, contiguous) on ``n`` decoded frames of ``size`` (H, W) and of
    ``run_predict`` on the same frames from disk with the default writer (label, colour and overlay PNGs) and with
    label PNGs only (what the colour and overlay cost); and the device used."""
    tmp = Path(tempfile.mkdtemp(prefix="road_bench_"))
    try:
        net, job, batches, _ = _setup(tmp, size, n, distinct, batch_size, device, amp)
        predictor, runs = job.model.predictor, count()
        contenders = {
            **bare_forwards(net, batches, predictor.device, amp),
            "run_predict to files": lambda: run_predict(ImageReader(workers=workers), SceneWriter(), job,
                                                        tmp / "frames", tmp / f"out{next(runs)}"),
            LABEL_ONLY: lambda: run_predict(ImageReader(workers=workers), SceneWriter(["label"]), job,
                                            tmp / "frames", tmp / f"out{next(runs)}"),
        }
        with contextlib.redirect_stderr(io.StringIO()):  # no progress bars between the tables
            return timeit(contenders, repeats=repeats), str(predictor.device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False, device: str | None = None, amp: bool = False, batch_size: int = 2,
        workers: int | None = None) -> dict[str, Any]:
    """Time every contender (interleaved repeats) and print frames/s with the ratio to the bare forward."""
    size, n, distinct, repeats = ((256, 512), 4, 2, 2) if quick else ((1024, 2048), 48, 4, 3)
    tmp = Path(tempfile.mkdtemp(prefix="road_bench_"))
    try:
        net, job, batches, host = _setup(tmp, size, n, distinct, batch_size, device, amp)
        predictor, runs = job.model.predictor, count()
        contenders = {
            "decode only (host)": lambda: _read_all(ImageReader(workers=workers), job, tmp / "frames", False),
            **bare_forwards(net, batches, predictor.device, amp),
            "core engine, in memory": lambda: [logits.argmax(0).cpu() for _, _, logits, _ in sliding_window(
                predictor, [ArraySource(f) for f in host], 19, size, (0, 0), batch_size)],
            "predict path": lambda: _read_all(ImageReader(workers=workers), job, tmp / "frames", True),
            "run_predict to files": lambda: run_predict(ImageReader(workers=workers), SceneWriter(), job,
                                                        tmp / "frames", tmp / f"out{next(runs)}"),
        }
        timings = timeit(contenders, repeats=repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    title = (f"road_scene prediction, {n} frames of {size[1]}x{size[0]}, batch {batch_size}, device "
             f"{predictor.device}, amp {amp}")
    ratio = print_table(title, timings, BARE_BEST, {"predict path": 0.95, "run_predict to files": 0.95}, "frames/s", n)
    return {"device": str(predictor.device), "frames": n, "frame_size": [size[1], size[0]], "ratio": ratio,
            "seconds": {name: t.median for name, t in timings.items()}}
