"""Benchmark (:mod:`segsuite.core.benchmark`): whole-volume inference against the bare model, and HD95 against MONAI.

1. End to end (``run_predict``: NIfTI read, normalisation, resampling to the model's spacing, inference,
   probabilities back to the input grid, argmax, NIfTI write) on a phantom volume stored at 1 x 1 x 3 mm for a model
   planned at the phantom's 1.5 x 1.5 x 3 mm, against the same network on the same (resampled) slices in batches of
   the same size (:func:`segsuite.core.benchmark.bare_forwards`: in the engine's layout, the limit, goal >= 0.9;
   and contiguous); the predict path in memory (:func:`segsuite.core.pipeline.predict_item`) beside it.
2. 3D: the predict path of a 3D U-Net (``model=unet3d``: a DynUNet laid out from the plan; 3D windows of the patch
   with half a patch of overlap, Gaussian-blended into the whole volume, restore and argmax) against the same network
   on the same windows in batches of the same size (goal >= 0.9); beside it the plan of the training cases
   (fingerprint + plan) and the resampling of one case stored at another spacing (read, RAS+, normalise, resample:
   the reader's ``open``; and its probabilities brought back).
3. HD95 of two 256^3 masks: :func:`.metrics.overlap_and_distance` (Dice, IoU, HD95 and ASSD together) against MONAI's
   ``compute_hausdorff_distance(percentile=95)`` alone, on the CPU (goal: no slower). ``--quick``: smaller sizes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.benchmark import BARE_BEST, bare_forward, bare_forwards, print_table, timeit
from segsuite.core.contracts import DataMeta, Job, ModelInfo
from segsuite.core.inference import InferenceOptions, TilePredictor, Window
from segsuite.core.inference.slabs import restore_stack
from segsuite.core.inference.windows import grid_for
from segsuite.core.models import create_dynunet, create_model
from segsuite.core.pipeline import predict_item, run_predict
from segsuite.domains.mri_dixon.cases import list_cases, read_case, read_dataset_json, resolve_channels
from segsuite.domains.mri_dixon.dataset import build_datasets, plan_from_cases
from segsuite.domains.mri_dixon.metrics import overlap_and_distance
from segsuite.domains.mri_dixon.phantom import make_dataset
from segsuite.domains.mri_dixon.reader import DixonReader
from segsuite.domains.mri_dixon.writer import DixonWriter

INPUT_SPACING = (1.0, 1.0, 3.0)  # the throughput case's voxels (mm): a finer in-plane grid than the phantom's


def throughput(shape: tuple[int, int, int], batch_size: int, repeats: int, device: str | None = None,
               amp: bool = False, spacing: tuple[float, float, float] | None = INPUT_SPACING) -> dict[str, Any]:
    """Seconds of end-to-end predict (NIfTI to NIfTI) of one case of ``shape`` voxels of ``spacing`` mm (None: the
    phantom's own, so nothing is resampled), of its predict path in memory (engine, probabilities back to the input
    grid, argmax) and of the bare model on the same (resampled) slices in the engine's layout (the limit) and
    contiguous, on ``device`` (default: CUDA when there is one), in bfloat16 with ``amp``. The model is planned on
    two phantom cases at the phantom's spacing (1.5 x 1.5 x 3 mm), as nnU-Net's would be; ``timings`` holds every
    contender's."""
    with tempfile.TemporaryDirectory() as tmp:
        factors = [s / p for s, p in zip(spacing or PHANTOM_SPACING, PHANTOM_SPACING)]
        anatomy = tuple(max(1, round(n * f)) for n, f in zip(shape, factors))  # at the phantom's spacing
        root = make_dataset(Path(tmp) / "phantom", n_cases=2, shape=anatomy, seed=0)
        cases = make_dataset(Path(tmp) / "input", n_cases=1, shape=anatomy, seed=0, voxel_spacing=spacing)
        meta = build_datasets(str(root), patch_size=list(anatomy[:2]), val_cases=["phantom_001"])["train"].meta
        torch.manual_seed(0)
        net = create_model("Unet", encoder_name="resnet18", encoder_weights=None, in_channels=meta["in_channels"],
                           classes=meta["num_classes"])
        predictor = TilePredictor(net, device=device, amp=amp)
        model = ModelInfo(predictor, DataMeta.from_dict(meta), meta["num_classes"], False)
        job = Job(model, options=InferenceOptions(tile=None, overlap=(0, 0), batch_size=batch_size), overwrite=True)
        reader, case = DixonReader(), str(cases / "imagesTr" / "phantom_000_000?.nii.gz")
        (item,) = reader.find(case, job)
        opened = reader.open(item, job)
        slices = np.stack([s.read(Window(0, 0, *s.shape)) for s in opened.sources])  # (N, C, H', W')
        batches = [torch.from_numpy(slices[i : i + batch_size]) for i in range(0, len(slices), batch_size)]
        contenders = {
            **bare_forwards(net, batches, predictor.device, amp),
            PREDICT_PATH: lambda: next(predict_item(opened, job)).classes,
            END_TO_END: lambda: run_predict(reader, DixonWriter(), job, case, Path(tmp) / "out.nii.gz"),
        }
        timings = timeit(contenders, repeats=repeats)
    title = (f"mri_dixon inference on {predictor.device}: volume {tuple(opened.grid or shape)} at "
             f"{spacing or PHANTOM_SPACING} mm -> {tuple(opened.shape or opened.grid)} at {PHANTOM_SPACING} mm, "
             f"{len(slices)} axial slices, batch {batch_size}, U-Net ResNet-18")
    speed = print_table(title, timings, BARE_BEST, goals={END_TO_END: 0.9}, unit="slices/s", work=len(slices))
    return {"slices": len(slices), "grid": list(opened.grid or shape), "ratio": speed[PREDICT_PATH],
            "end_to_end_ratio": speed[END_TO_END], **{f"{name} s": t.median for name, t in timings.items()},
            "timings": timings}


PHANTOM_SPACING = (1.5, 1.5, 3.0)  # make_dataset's default: the model's training spacing
PREDICT_PATH = "predict path (slices -> label volume)"
END_TO_END = "predict end to end (NIfTI -> NIfTI)"


def _volume_job(root: Path, patch: list[int], batch_size: int) -> tuple[Job, torch.nn.Module, dict]:
    """A job of an untrained DynUNet (nnU-Net's 32 base filters) planned on ``root`` with 3D ``patch`` windows."""
    meta = build_datasets(str(root), patch_size=patch, spatial_dims=3, val_cases=["phantom_001"])["train"].meta
    torch.manual_seed(0)
    net = create_dynunet(meta["in_channels"], meta["num_classes"], patch, meta["target_spacing"])
    model = ModelInfo(TilePredictor(net), DataMeta.from_dict({**meta, "batch_size": batch_size}),
                      meta["num_classes"], False)
    return Job(model, options=InferenceOptions(None, (0, 0), batch_size), overwrite=True), net, meta


def _plan_and_resampling(root: Path, other: str, job: Job, repeats: int) -> dict[str, float]:
    """Seconds of the plan of ``root``'s training cases and of opening (resampling) the case ``other``."""
    spec = read_dataset_json(root)
    channels = resolve_channels(spec, None)
    raws = [read_case(spec, name, channels) for name in list_cases(spec)]
    reader = DixonReader()
    (item,) = reader.find(other, job)
    opened = reader.open(item, job)
    logits = torch.zeros(job.model.num_classes, *opened.case.image.shape[1:], device=job.model.predictor.device)
    timings = timeit({
        f"plan of {len(raws)} cases (fingerprint + plan)":
            lambda: plan_from_cases(spec, raws, channels, False, 2, 0, 3, 8.0, None),
        "open one case (read, normalise, resample)": lambda: reader.open(item, job),
        "probabilities back to its grid, argmax": lambda: restore_stack(opened.stack, logits, len(logits)),
    }, repeats=repeats)
    print(f"  plan + resampling: one case of {tuple(opened.grid)} voxels resampled to "
          f"{tuple(opened.case.image.shape[1:])}")
    for name, t in timings.items():
        print(f"    {name:<44} {t.median:9.3f} s")
    return {f"{name} s": t.median for name, t in timings.items()}


def throughput_3d(shape: tuple[int, int, int], patch: list[int], batch_size: int, repeats: int) -> dict[str, float]:
    """Seconds of the 3D predict path and of the bare 3D forward on the same windows (one case), with the plan
    and resampling times (module docstring, 2.)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "phantom", n_cases=2, shape=shape, seed=0)
        other = make_dataset(Path(tmp) / "other", n_cases=1, shape=shape, seed=1, voxel_spacing=(1.2, 1.2, 2.5))
        job, net, meta = _volume_job(root, patch, batch_size)
        predictor = job.model.predictor
        reader, case = DixonReader(), str(root / "imagesTr" / "phantom_000_000?.nii.gz")
        (item,) = reader.find(case, job)
        opened = reader.open(item, job)
        (source,), options = opened.sources, opened.options
        boxes = grid_for(source.shape, options.tile, options.overlap)
        windows = np.stack([source.read(box) for box in boxes])  # (N, C, d, h, w)
        batches = [torch.from_numpy(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
        contenders = {
            "bare 3D model (same windows, in memory)": bare_forward(net, batches, predictor.device),
            "3D predict path (windows -> label volume)": lambda: next(predict_item(opened, job)).classes,
        }
        timings = timeit(contenders, repeats=repeats)
        title = (f"mri_dixon 3D inference on {predictor.device}: volume {tuple(source.shape)}, {len(boxes)} windows "
                 f"of {list(options.tile)} (overlap {list(options.overlap)}), batch {batch_size}, DynUNet "
                 f"{meta['target_spacing'] and [round(s, 2) for s in meta['target_spacing']]} mm")
        names = list(contenders)
        speed = print_table(title, timings, names[0], goals={names[1]: 0.9}, unit="windows/s", work=len(boxes))
        other_case = str(other / "imagesTr" / "phantom_000_000?.nii.gz")
        prep = _plan_and_resampling(root, other_case, job, repeats)
    return {"windows": len(boxes), "ratio": speed[names[1]], **{f"{n} s": t.median for n, t in timings.items()},
            **prep}


def _masks(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A sphere and a shifted, squashed ellipsoid in a ``size``^3 grid."""
    grid = np.ogrid[:size, :size, :size]
    c, r = size / 2, size * 0.3
    sphere = sum(((g - c) / r) ** 2 for g in grid) <= 1
    radii, centre = (r * 1.1, r * 0.9, r), (c + 4, c - 3, c)
    ellipsoid = sum(((g - m) / q) ** 2 for g, m, q in zip(grid, centre, radii)) <= 1
    return sphere, ellipsoid


def hd95_timing(size: int, spacing: tuple[float, float, float], repeats: int) -> dict[str, float]:
    """Seconds of our HD95 (with Dice, IoU, ASSD) and of MONAI's HD95 on the same two masks, and both values."""
    from monai.metrics import compute_hausdorff_distance

    reference, prediction = _masks(size)
    y, y_pred = (torch.from_numpy(m)[None, None] for m in (reference, prediction))
    values: dict[str, float] = {}

    def ours() -> None:
        values["ours_hd95_mm"] = overlap_and_distance(reference, prediction, spacing)["hd95_mm"]

    def monai() -> None:
        values["monai_hd95_mm"] = float(compute_hausdorff_distance(y_pred, y, include_background=True,
                                                                   percentile=95, spacing=list(spacing)))

    timings = timeit({"MONAI compute_hausdorff_distance (HD95)": monai, "ours (HD95 + Dice, IoU, ASSD)": ours},
                     repeats=repeats)
    speed = print_table(f"HD95 of two {size}^3 masks (CPU)", timings, "MONAI compute_hausdorff_distance (HD95)",
                        goals={"ours (HD95 + Dice, IoU, ASSD)": 1.0})
    print(f"  HD95 values: ours {values['ours_hd95_mm']:.3f} mm, MONAI {values['monai_hd95_mm']:.3f} mm")
    return {"size": size, "speedup": speed["ours (HD95 + Dice, IoU, ASSD)"], **values}


def run(quick: bool = False) -> dict:
    """The three measurements; prints the tables and returns the numbers."""
    gpu = torch.cuda.is_available()
    shape = (64, 64, 24) if quick else ((256, 256, 128) if gpu else (256, 256, 32))
    speed = throughput(shape, batch_size=16, repeats=3 if quick else 5)
    if quick:
        volume, patch, batch = (64, 64, 24), [32, 32, 16], 2
    else:
        volume, patch, batch = ((256, 256, 128), [128, 128, 64], 2) if gpu else ((96, 96, 48), [48, 48, 24], 2)
    speed_3d = throughput_3d(volume, patch, batch, repeats=3 if quick else 5)
    hd95 = hd95_timing(128 if quick else 256, (1.5, 1.5, 3.0), repeats=1 if quick else 3)
    return {"throughput": speed, "throughput_3d": speed_3d, "hd95": hd95}
