"""Benchmark: whole-volume inference throughput against the bare model, and HD95 against MONAI.

1. Slices per second of the predict path (:func:`.predict.predict_volume`: slice sources, the core's
   sliding-window engine, argmax, restacking) on a prepared phantom volume, divided by the slices per second of
   the same ``task.net`` forward on the same slices, pre-built into batches of the same size and already on the
   device (goal >= 0.9). The end-to-end ``predict`` (NIfTI read, normalisation, inference, NIfTI write) is
   reported beside it.
2. HD95 of two 256^3 masks: :func:`.metrics.overlap_and_distance` (Dice, IoU, HD95 and ASSD together) against
   MONAI's ``compute_hausdorff_distance(percentile=95)`` alone, both on the CPU (goal: no slower).

Run it with ``scripts/benchmark.py mri_dixon`` (``--quick`` for a small volume and 128^3 masks).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.inference import TilePredictor, Window
from core.task import SegmentationTask

from .dataset import build_datasets, case_files, load_inference_case, read_dataset_json
from .metrics import overlap_and_distance
from .phantom import make_dataset
from .predict import SliceSource, predict, predict_volume, slice_stack


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_times(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` timed calls of each function (seconds), after one warm-up call each. The calls
    are interleaved (a, b, a, b...) so that a change in machine load affects all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for repeat in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            if repeat:
                times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def _task(meta: dict) -> SegmentationTask:
    """The default network (U-Net, ResNet-18 encoder, random weights) for ``meta``."""
    torch.manual_seed(0)
    model = {"_target_": "core.models.create_model", "arch": "Unet", "encoder_name": "resnet18",
             "encoder_weights": None, "in_channels": meta["in_channels"], "classes": meta["num_classes"]}
    return SegmentationTask(model=model, num_classes=meta["num_classes"], ignore_index=meta["ignore_index"],
                            class_names=meta["class_names"], data_meta=meta, domain="mri_dixon").eval()


def throughput(shape: tuple[int, int, int], batch_size: int, repeats: int, device: str | None = None) -> dict:
    """Slices/s of the predict path, of the bare model on the same slices, and of end-to-end ``predict``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "phantom", n_cases=2, shape=shape, seed=0)
        meta = build_datasets(str(root), patch_size=list(shape[:2]), val_cases=["phantom_001"])["train"].meta
        task = _task(meta)
        predictor = TilePredictor(task.net, device=device)
        files = case_files(read_dataset_json(root), "phantom_000", meta["channels"])
        case = load_inference_case(files, meta, "phantom_000")
        n_slices = case.image.shape[meta["axis"] + 1]

        stack = slice_stack(case, meta["axis"], meta["size_divisor"])  # (N, C, H', W')
        whole = Window(0, 0, *stack.shape[2:])
        slices = np.stack([SliceSource(stack, i, meta["context_slices"]).read(whole) for i in range(n_slices)])
        batches = [torch.from_numpy(slices[i : i + batch_size]).to(predictor.device)
                   for i in range(0, n_slices, batch_size)]

        @torch.inference_mode()
        def bare() -> None:
            for batch in batches:
                task.net(batch)

        def pipeline() -> None:
            predict_volume(predictor, case, meta, meta["num_classes"], batch_size=batch_size)

        out = Path(tmp) / "out"

        def end_to_end() -> None:
            predict(task, predictor, str(root / "imagesTr"), str(out), overwrite=True, batch_size=batch_size)

        best = _best_times({"bare": bare, "pipeline": pipeline, "end_to_end": end_to_end}, predictor.device, repeats)
        bare_s, pipeline_s, end_to_end_s = best["bare"], best["pipeline"], best["end_to_end"] / 2  # 2 cases a call
    return {
        "device": str(predictor.device), "volume": list(shape), "slices": n_slices, "batch_size": batch_size,
        "bare_slices_per_s": n_slices / bare_s, "pipeline_slices_per_s": n_slices / pipeline_s,
        "end_to_end_slices_per_s": n_slices / end_to_end_s, "ratio": bare_s / pipeline_s,
    }


def _masks(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A sphere and a shifted, squashed ellipsoid in a ``size``^3 grid."""
    grid = np.ogrid[:size, :size, :size]
    c, r = size / 2, size * 0.3
    sphere = sum(((g - c) / r) ** 2 for g in grid) <= 1
    radii, centre = (r * 1.1, r * 0.9, r), (c + 4, c - 3, c)
    ellipsoid = sum(((g - m) / q) ** 2 for g, m, q in zip(grid, centre, radii)) <= 1
    return sphere, ellipsoid


def hd95_timing(size: int, spacing: tuple[float, float, float], repeats: int) -> dict:
    """Seconds for our HD95 (with Dice, IoU, ASSD) and for MONAI's HD95 on the same two masks."""
    from monai.metrics import compute_hausdorff_distance

    reference, prediction = _masks(size)
    ours: dict = {}

    def run_ours() -> None:
        ours.update(overlap_and_distance(reference, prediction, spacing))

    y, y_pred = (torch.from_numpy(m)[None, None] for m in (reference, prediction))
    theirs: dict = {}

    def run_monai() -> None:
        theirs["hd95_mm"] = float(compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95,
                                                             spacing=list(spacing)))

    best = _best_times({"ours": run_ours, "monai": run_monai}, torch.device("cpu"), repeats)
    ours_s, monai_s = best["ours"], best["monai"]
    return {"size": size, "spacing": list(spacing), "ours_s": ours_s, "monai_s": monai_s,
            "speedup": monai_s / ours_s, "ours_hd95_mm": ours["hd95_mm"], "monai_hd95_mm": theirs["hd95_mm"]}


def run(quick: bool = False) -> dict:
    """Both measurements; prints a table and returns the numbers."""
    gpu = torch.cuda.is_available()
    shape = (64, 64, 24) if quick else ((256, 256, 128) if gpu else (256, 256, 32))
    speed = throughput(shape, batch_size=16, repeats=3 if quick else 5)
    hd95 = hd95_timing(128 if quick else 256, (1.5, 1.5, 3.0), repeats=1 if quick else 3)
    rows = [
        ("inference, predict path", f"{speed['pipeline_slices_per_s']:.1f} slices/s",
         f"bare model {speed['bare_slices_per_s']:.1f} slices/s", f"ratio {speed['ratio']:.3f}", ">= 0.9"),
        ("predict end to end (read, write)", f"{speed['end_to_end_slices_per_s']:.1f} slices/s", "", "", ""),
        (f"HD95 on {hd95['size']}^3 masks", f"{hd95['ours_s']:.3f} s (+ Dice, ASSD)",
         f"MONAI {hd95['monai_s']:.3f} s", f"speed-up {hd95['speedup']:.2f}x", ">= 1"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print(f"mri_dixon benchmark on {speed['device']}: volume {tuple(speed['volume'])}, "
          f"{speed['slices']} axial slices, batch {speed['batch_size']}, U-Net ResNet-18")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f"HD95 values: ours {hd95['ours_hd95_mm']:.3f} mm, MONAI {hd95['monai_hd95_mm']:.3f} mm")
    return {"throughput": speed, "hd95": hd95}
