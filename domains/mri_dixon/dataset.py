"""nnU-Net / MSD raw-layout Dixon data sets as 2D (or 2.5D) slice datasets or 3D patch datasets.

Layout under ``root``::

    dataset.json               channel_names {"0": "water", ...}, labels {"background": 0, ...},
                               file_ending ".nii.gz", numTraining
    imagesTr/CASE_0000.nii.gz  one file per channel (4-digit channel index)
    labelsTr/CASE.nii.gz
    imagesTs/, labelsTs/       optional; a "test" dataset is built when both exist

Each case is read once, checked (shared grid, finite voxels, known label values), brought to the
closest RAS+ orientation and cached in memory as a :class:`Case`. The training cases are planned first
(:mod:`.plan`: target spacing, patch and batch sizes, normalisation). Each channel is normalised per case:
clipped to its own 0.5/99.5 percentiles (over all voxels), then z-scored with the clipped mean and
standard deviation (channels named CT: the plan's foreground statistics of the whole training set). The optional
fat-fraction channel (``F / (W + F)`` from the raw water and fat images, see :mod:`.fatfraction`) is appended
unnormalised, it is already in [0, 1]. Then image (cubic) and label (nearest) are resampled to the target spacing
(:mod:`.resample`; ``resample=False`` keeps every case's own grid).

Samples (:mod:`.patches`): 2D slices perpendicular to ``axis`` of the canonical volume, ``image`` ``(C', H, W)`` with
``C' = C * (2 * context_slices + 1)`` (2.5D: for every channel the slices ``s - k .. s + k``, channel-major, edge
slices replicated) and ``mask`` ``(H, W)`` int64 with ignored pixels set to ``ignore_index``; or 3D patches
``(C, X, Y, Z)`` / ``(X, Y, Z)``. Training draws ``patch_size`` windows with foreground over-sampling
(``foreground_fraction``), then augments them (:mod:`.augment`); validation/test take every slice whole, padded
bottom/right to one size (a multiple of ``size_divisor``), or tile every volume; padding carries ``ignore_index``.
"""


from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from torch.utils.data import Dataset

from segsuite.core.errors import ConfigError
from segsuite.core.files import generated_root
from segsuite.core.splits import split_names

from .augment import Augmentation
from .cases import (
    DEFAULT_PERCENTILES,
    FF_CHANNEL,
    DatasetSpec,
    RawCase,
    _water_fat_indices,
    finish_case,
    list_cases,
    load_case,
    read_case,
    read_dataset_json,
    resolve_channels,
)
from .fatfraction import DEFAULT_RELATIVE_THRESHOLD
from .patches import EvalWindows, TrainWindows
from .phantom import make_dataset
from .plan import PER_CASE, Plan, case_fingerprint, make_plan

log = logging.getLogger(__name__)

NORMALIZATION_SCHEME = PER_CASE  # each channel of each case clipped to its own percentiles, then z-scored
ITERATIONS_PER_EPOCH = 250  # 3D training: nnU-Net's batches per epoch when samples_per_epoch is null
# Colours (RGB) for common Dixon labels; other labels get a colour from a fixed cycle.
LABEL_COLORS = {
    "background": (0, 0, 0),
    "liver": (165, 80, 40),
    "spleen": (150, 60, 170),
    "kidneys": (240, 200, 40),
    "kidney_left": (240, 200, 40),
    "kidney_right": (250, 150, 30),
    "muscle": (220, 40, 40),
    "subcutaneous_fat": (250, 240, 150),
    "visceral_fat": (255, 140, 60),
}
COLOR_CYCLE = ((31, 119, 180), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194))


def _check_config(
    axis: int,
    context_slices: int,
    patch_size: list[int] | None,
    foreground_fraction: float,
    size_divisor: int,
    spatial_dims: int = 2,
    target_spacing: list[float] | None = None,
) -> None:
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2 (canonical R, A, S), got {axis}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 (slices) or 3 (volumes), got {spatial_dims}")
    if context_slices < 0 or (spatial_dims == 3 and context_slices):
        raise ConfigError(f"context_slices must be >= 0 (and 0 for 3D training), got {context_slices}")
    if patch_size is not None and (len(patch_size) != spatial_dims or any(int(p) < 1 for p in patch_size)):
        raise ConfigError(f"patch_size must be {spatial_dims} positive ints for {spatial_dims}D training "
                          f"(or null: from the plan), got {list(patch_size)}")
    if not 0 <= foreground_fraction <= 1:
        raise ConfigError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
    if size_divisor < 1:
        raise ConfigError(f"size_divisor must be >= 1, got {size_divisor}")
    if target_spacing is not None and (len(target_spacing) != 3 or any(float(t) <= 0 for t in target_spacing)):
        raise ConfigError(f"target_spacing must be three positive mm values along R, A, S (or null: from the "
                          f"plan), got {list(target_spacing)}")


def _class_colors(names: list[str]) -> list[list[int]]:
    return [list(LABEL_COLORS.get(n, COLOR_CYCLE[i % len(COLOR_CYCLE)])) for i, n in enumerate(names)]


def make_meta(
    spec: DatasetSpec,
    channels: list[int],
    add_fat_fraction: bool,
    axis: int,
    context_slices: int,
    patch_size: list[int],
    ignore_index: int,
    percentiles: tuple[float, float],
    size_divisor: int = 32,
) -> dict:
    """The checkpoint metadata shared by all datasets of one build (plain JSON-able values)."""
    names = [spec.channel_names[i] for i in channels]
    inputs = names + ([FF_CHANNEL] if add_fat_fraction else [])
    return {
        "domain": "mri_dixon",
        "in_channels": len(inputs) * (2 * context_slices + 1),
        "num_classes": len(spec.labels),
        "class_names": spec.class_names,
        "class_colors": _class_colors(spec.class_names),
        "labels": dict(spec.labels),
        "ignore_index": int(ignore_index),
        "patch_size": [int(p) for p in patch_size],
        "channels": names,
        "dataset_channels": list(spec.channel_names),
        "input_channels": inputs,
        "add_fat_fraction": bool(add_fat_fraction),
        "axis": int(axis),
        "context_slices": int(context_slices),
        "orientation": "RAS",
        "size_divisor": int(size_divisor),
        "file_ending": spec.file_ending,
        "normalization": {
            "scheme": NORMALIZATION_SCHEME,
            "percentiles": [float(p) for p in percentiles],
            "per_channel": True,
            "fat_fraction": {"min_signal": None, "relative_threshold": DEFAULT_RELATIVE_THRESHOLD}
            if add_fat_fraction
            else None,
        },
    }


def ensure_root(root: str | os.PathLike, synthetic_if_missing: bool = False, synthetic_cases: int = 8,
                synthetic_shape: list[int] = (64, 64, 24), seed: int = 0) -> Path:
    """``root`` as a Path; a missing root is generated (atomically) as a phantom if ``synthetic_if_missing``."""
    generate = functools.partial(make_dataset, n_cases=synthetic_cases, shape=tuple(synthetic_shape), seed=seed)
    return generated_root(root, generate if synthetic_if_missing else None,
                          "set synthetic_if_missing to generate a phantom")


def plan_from_cases(
    spec: DatasetSpec,
    cases: list[RawCase],
    channels: list[int],
    add_fat_fraction: bool,
    axis: int,
    context_slices: int,
    spatial_dims: int,
    memory_gb: float,
    target_spacing: list[float] | None,
) -> Plan:
    """The training plan (:mod:`.plan`) from the read training cases."""
    names = [spec.channel_names[i] for i in channels]
    num_classes = len(spec.labels)
    fingerprints = [
        case_fingerprint({spec.channel_names[i]: case.raw[i] for i in channels}, case.label, case.spacing, num_classes)
        for case in cases
    ]
    inputs = names + ([FF_CHANNEL] if add_fat_fraction else [])
    return make_plan(fingerprints, names, inputs, spec.class_names, axis, context_slices, spatial_dims, memory_gb,
                     target_spacing)


def _sample_axes(spatial_dims: int, axis: int) -> list[int]:
    """The canonical axes a sample's spatial dims run along: all three, or the two in a slice's plane."""
    return [0, 1, 2] if spatial_dims == 3 else [a for a in range(3) if a != axis]


def _plan_meta(plan: Plan, patch: list[int], target: list[float] | None, spatial_dims: int, axis: int) -> dict:
    """What the checkpoint keeps of the plan: the whole plan, and what training and prediction use from it."""
    spacing = target if target is not None else plan.median_spacing
    sample_spacing = [float(spacing[a]) for a in _sample_axes(spatial_dims, axis)]
    return {
        "plan": plan.to_dict(),
        "spatial_dims": int(spatial_dims),
        "resample": target is not None,
        "target_spacing": None if target is None else [float(t) for t in target],
        "batch_size": int(plan.batch_size),
        # null network options (e.g. unet3d's patch_size and spacing) are taken from here by segsuite.core.train
        "model_defaults": {"patch_size": [int(p) for p in patch], "spacing": sample_spacing},
    }


def _augmenter(augmentation, meta: dict, patch: list[int]) -> tuple:
    """``(transform, margin)`` for the training dataset, or ``(None, None)`` without augmentation."""
    if augmentation is None or (isinstance(augmentation, Mapping) and not augmentation):
        return None, None
    if not isinstance(augmentation, Augmentation):
        raise ConfigError(f"augmentation must be an {Augmentation.__name__} (conf/augmentation/*.yaml) or empty, "
                          f"got {type(augmentation).__name__}")
    axes = _sample_axes(meta["spatial_dims"], meta["axis"])
    spacing = meta["target_spacing"] or meta["plan"]["median_spacing"]
    transform = augmentation.transform(axes, patch, meta["class_names"], [spacing[a] for a in axes])
    return transform, augmentation.margin(patch)


def build_datasets(
    root: str,
    channels: list[str | int] | None = None,
    axis: int = 2,
    context_slices: int = 0,
    patch_size: list[int] | None = None,
    val_fraction: float = 0.2,
    val_cases: list[str] | None = None,
    foreground_fraction: float = 0.33,
    add_fat_fraction: bool = False,
    ignore_index: int = 255,
    seed: int = 0,
    synthetic_if_missing: bool = False,
    samples_per_epoch: int | None = None,
    size_divisor: int = 32,
    percentiles: list[float] = DEFAULT_PERCENTILES,
    synthetic_cases: int = 8,
    synthetic_shape: list[int] = (64, 64, 24),
    spatial_dims: int = 2,
    resample: bool = True,
    target_spacing: list[float] | None = None,
    memory_gb: float = 8.0,
    augmentation: Augmentation | Mapping | None = None,
) -> dict[str, Dataset]:
    """Build ``{"train", "val"[, "test"]}`` datasets from an nnU-Net raw data set at ``root``.

    The training cases are read first and planned (:mod:`.plan`, logged; kept in ``meta["plan"]``); options left
    None come from the plan. ``channels``: names or indices from dataset.json (None = all). ``spatial_dims``: 2
    (slices perpendicular to ``axis`` of the canonical RAS+ volume; ``context_slices`` k neighbours on each side
    for 2.5D) or 3 (patches, :mod:`.patches`). ``patch_size``: the training crop (None: the plan's).
    ``resample``: bring every case to ``target_spacing`` (None: the plan's). ``memory_gb``: the GPU memory the
    plan's patch and batch sizes are budgeted for. ``samples_per_epoch``: training length (None: one crop per
    training slice in 2D, 250 batches of the plan's batch size in 3D). ``augmentation``: an
    :class:`.augment.Augmentation` for the training samples (None or empty: none). ``val_cases`` overrides
    ``val_fraction``. A missing ``root`` is generated as a phantom (``synthetic_cases`` of ``synthetic_shape``)
    when ``synthetic_if_missing``. "test" is built from ``imagesTs/`` + ``labelsTs/`` when both exist.
    """
    _check_config(axis, context_slices, patch_size, foreground_fraction, size_divisor, spatial_dims, target_spacing)
    root_path = ensure_root(root, synthetic_if_missing, synthetic_cases, synthetic_shape, seed)
    spec = read_dataset_json(root_path)
    if 0 <= ignore_index < len(spec.labels):
        raise ConfigError(f"ignore_index {ignore_index} collides with class values {spec.labels}")
    indices = resolve_channels(spec, channels)
    water_fat = _water_fat_indices(spec) if add_fat_fraction else ()
    percentiles = tuple(float(p) for p in percentiles)
    train_names, val_names = split_names(list_cases(spec), val_fraction, val_cases, seed, "cases")
    raws = [read_case(spec, n, sorted(set(indices) | set(water_fat)), ignore_index=ignore_index) for n in train_names]
    plan = plan_from_cases(spec, raws, indices, add_fat_fraction, axis, context_slices, spatial_dims, memory_gb,
                           target_spacing)
    log.info("%s", plan.summary())
    patch = [int(p) for p in patch_size] if patch_size is not None else plan.patch_size
    target = plan.target_spacing if resample else None
    meta = make_meta(spec, indices, add_fat_fraction, axis, context_slices, patch, ignore_index, percentiles,
                     size_divisor)
    meta.update(_plan_meta(plan, patch, target, spatial_dims, axis))
    meta["normalization"]["channels"] = plan.normalization
    meta["cases"] = {"train": train_names, "val": val_names}
    common = dict(channels=indices, add_fat_fraction=add_fat_fraction, percentiles=percentiles,
                  schemes=plan.normalization, target_spacing=target)
    train = [finish_case(raws.pop(0), spec, **common) for _ in train_names]  # each raw case freed once done
    val = [load_case(spec, n, ignore_index=ignore_index, **common) for n in val_names]
    test = None
    if (root_path / "imagesTs").is_dir() and (root_path / "labelsTs").is_dir():
        test_dirs = dict(images_dir="imagesTs", labels_dir="labelsTs", ignore_index=ignore_index)
        test = [load_case(spec, n, **test_dirs, **common) for n in list_cases(spec, "imagesTs", "labelsTs")]
    augment, margin = _augmenter(augmentation, meta, patch)
    return _windows(train, val, test, meta, patch, size_divisor, samples_per_epoch, augment=augment, margin=margin,
                    foreground_fraction=foreground_fraction, seed=seed)


def _windows(train, val, test, meta, patch, size_divisor, samples_per_epoch, **options) -> dict[str, Dataset]:
    """Slices (``spatial_dims`` 2) or 3D patches (:mod:`.patches`); a 3D epoch is nnU-Net's 250 batches by default."""
    ignore, volumes = meta["ignore_index"], meta["spatial_dims"] == 3
    layout = dict(axis=None) if volumes else dict(axis=meta["axis"], context_slices=meta["context_slices"])
    samples = samples_per_epoch or (ITERATIONS_PER_EPOCH * meta["batch_size"] if volumes else None)
    evaluation = dict(patch_size=patch) if volumes else dict(size_divisor=size_divisor)
    datasets = {"train": TrainWindows(train, meta, ignore, patch, samples_per_epoch=samples, **layout, **options)}
    for name, cases in (("val", val), ("test", test)):
        if cases is not None:
            datasets[name] = EvalWindows(cases, meta, ignore, **layout, **evaluation)
    return datasets
