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

2D samples are slices perpendicular to ``axis`` of the canonical volume: ``image`` is ``(C', H, W)`` with
``C' = C * (2 * context_slices + 1)`` (2.5D: for every channel the slices ``s - k .. s + k``, channel-major,
edge slices replicated), ``mask`` is ``(H, W)`` int64 with ignored pixels set to ``ignore_index``. 3D samples
are patches ``(C, X, Y, Z)`` / ``(X, Y, Z)`` (:mod:`.patches`).

* Training (:class:`TrainSliceDataset`): a random ``patch_size`` crop of a slice, padded first if the slice
  is smaller (image 0, mask ``ignore_index``). With probability ``foreground_fraction`` the slice is drawn
  from the slices holding foreground and the crop is placed so it contains a random foreground pixel.
  An augmentation (:mod:`.augment`) then transforms the crop. Randomness comes from torch's global generator,
  which DataLoader seeds per worker.
* Validation/test (:class:`EvalSliceDataset`): every slice whole, padded at the bottom/right to a size
  common to the dataset (largest slice, rounded up to a multiple of ``size_divisor``) so batches collate
  and down-sampling networks fit; padded pixels carry ``ignore_index`` so they never count.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from segsuite.core import folds
from segsuite.core.errors import ConfigError, DataError

from .augment import Augmentation
from .fatfraction import DEFAULT_RELATIVE_THRESHOLD, fat_fraction
from .io import (
    Volume,
    canonical_affine,
    check_channel_files,
    check_same_grid,
    from_canonical,
    read_volume,
    to_canonical,
    voxel_spacing,
)
from .patches import CaseDataset, EvalPatchDataset, TrainPatchDataset, foreground, to_sample, window_starts
from .phantom import make_dataset
from .plan import CT as CT_SCHEME
from .plan import PER_CASE, Plan, case_fingerprint, make_plan
from .resample import label_to_target, needs_resampling, resampled_affine, to_target

log = logging.getLogger(__name__)

NORMALIZATION_SCHEME = PER_CASE  # each channel of each case clipped to its own percentiles, then z-scored
ITERATIONS_PER_EPOCH = 250  # 3D training: nnU-Net's batches per epoch when samples_per_epoch is null
DEFAULT_PERCENTILES = (0.5, 99.5)
FF_CHANNEL = "fat_fraction"
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


@dataclass
class DatasetSpec:
    """What ``dataset.json`` says: channel names by index, class labels, the ``ignore`` label if any."""

    root: Path
    channel_names: list[str]
    labels: dict[str, int]
    ignore_label: int | None
    file_ending: str
    num_training: int | None

    @property
    def class_names(self) -> list[str]:
        return sorted(self.labels, key=self.labels.get)


@dataclass
class Case:
    """One case on its canonical (closest RAS+) grid, cached in memory.

    ``image`` ``(C, X, Y, Z)`` float32 normalised (plus the FF channel), ``label`` ``(X, Y, Z)`` int16 with
    the ``ignore`` label already mapped to ``ignore_index`` (``None`` without a label), ``affine`` the
    canonical affine of ``image``'s grid (the resampled grid after :func:`resample_case`), ``reference`` the
    first channel as read (original grid and header) for writing predictions, ``normalization`` the per-channel
    clipping/z-score numbers of this case.
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    reference: Volume
    normalization: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_original(self, label: np.ndarray) -> np.ndarray:
        """A canonical ``(X, Y, Z)`` prediction back on the original axes of the input files."""
        return from_canonical(label, self.reference)


def read_dataset_json(root: str | os.PathLike) -> DatasetSpec:
    """Parse and check ``root/dataset.json`` (nnU-Net v2 keys; MSD ``modality`` accepted for channels)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise DataError(f"{str(path)!r} not found; a data set root holds dataset.json, imagesTr/ and labelsTr/")
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{str(path)!r}: cannot parse JSON ({err})") from err
    channels = content.get("channel_names", content.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DataError(f'{str(path)!r}: \'channel_names\' must map channel indices to names, e.g. {{"0": "water"}}')
    try:
        order = sorted(channels, key=int)
    except ValueError as err:
        raise DataError(f"{str(path)!r}: channel_names keys must be integers as strings, got {list(channels)}") from err
    if [int(k) for k in order] != list(range(len(order))):
        raise DataError(f"{str(path)!r}: channel_names keys must be 0..{len(order) - 1}, got {order}")
    labels, ignore = _parse_labels(content.get("labels"), path)
    return DatasetSpec(
        root=Path(root),
        channel_names=[str(channels[k]) for k in order],
        labels=labels,
        ignore_label=ignore,
        file_ending=str(content.get("file_ending", ".nii.gz")),
        num_training=content.get("numTraining"),
    )


def _parse_labels(labels: object, path: Path) -> tuple[dict[str, int], int | None]:
    """Class labels ``{name: value}`` (values 0..N-1, background 0) and the ``ignore`` value if present."""
    if isinstance(labels, dict) and labels and all(str(k).isdigit() for k in labels):
        labels = {str(v): int(k) for k, v in labels.items()}  # MSD style {"0": "background"}
    if not isinstance(labels, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise DataError(
            f'{str(path)!r}: \'labels\' must map names to integer values, e.g. {{"background": 0, "liver": 1}}; '
            f"region-based (list) labels are not supported, got {labels!r}"
        )
    labels = dict(labels)
    ignore = labels.pop("ignore", None)
    if sorted(labels.values()) != list(range(len(labels))) or labels.get("background", 0) != 0:
        raise DataError(f"{str(path)!r}: label values must be 0..N-1 with background 0, got {labels}")
    return labels, ignore


def list_cases(spec: DatasetSpec, images_dir: str = "imagesTr", labels_dir: str | None = "labelsTr") -> list[str]:
    """Case identifiers: label files in ``labels_dir``, or first-channel images if ``labels_dir`` is None."""
    ending = spec.file_ending
    if labels_dir is not None:
        folder, suffix = spec.root / labels_dir, ending
    else:
        folder, suffix = spec.root / images_dir, f"_0000{ending}"
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} not found; expected the nnU-Net raw layout ({images_dir}/, labels)")
    cases = sorted(
        p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".")
    )
    if not cases:
        raise DataError(f"{str(folder)!r} holds no '*{suffix}' files")
    check_channel_files(spec.root / images_dir, cases, spec.channel_names, ending)  # as nnU-Net does
    return cases


def resolve_channels(spec: DatasetSpec, channels: list[str | int] | None) -> list[int]:
    """Channel indices for names or indices in ``channels`` (None: all channels of dataset.json)."""
    if channels is None:
        return list(range(len(spec.channel_names)))
    names = [n.lower() for n in spec.channel_names]
    indices = []
    for channel in channels:
        if isinstance(channel, int) and 0 <= channel < len(names):
            indices.append(channel)
        elif str(channel).lower() in names:
            indices.append(names.index(str(channel).lower()))
        else:
            raise ConfigError(f"unknown channel {channel!r}; dataset.json has {dict(enumerate(spec.channel_names))}")
    if not indices or len(set(indices)) != len(indices):
        raise ConfigError(f"channels must be a non-empty list without repeats, got {channels}")
    return indices


def _water_fat_indices(spec: DatasetSpec) -> tuple[int, int]:
    names = [n.lower() for n in spec.channel_names]
    if "water" not in names or "fat" not in names:
        raise ConfigError(
            f"add_fat_fraction needs channels named 'water' and 'fat' in dataset.json, got {spec.channel_names}"
        )
    return names.index("water"), names.index("fat")


def normalize_channel(
    array: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[np.ndarray, dict[str, float]]:
    """Clip to the array's own percentiles, then z-score; returns float32 array and the numbers used."""
    low, high = (float(v) for v in np.percentile(array, percentiles))
    clipped = np.clip(array, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    normalised = ((clipped - mean) / max(std, 1e-8)).astype(np.float32)
    return normalised, {"low": low, "high": high, "mean": mean, "std": std}


def normalize_ct(array: np.ndarray, stats: dict, name: str = "CT") -> tuple[np.ndarray, dict[str, float]]:
    """nnU-Net's CT scheme: clip to the training foreground's 0.5/99.5 percentiles, z-score with its mean and std
    (``stats``: a channel of the plan's ``normalization``)."""
    if stats.get("mean") is None:
        raise DataError(f"channel {name!r} is normalised as CT but the training labels hold no foreground to "
                        f"take its intensity statistics from")
    low, high, mean, std = (float(stats[k]) for k in ("percentile_00_5", "percentile_99_5", "mean", "std"))
    normalised = ((np.clip(array, low, high) - mean) / max(std, 1e-8)).astype(np.float32)
    return normalised, {"low": low, "high": high, "mean": mean, "std": std}


def build_image(
    raw: dict[int, np.ndarray],
    channels: list[int],
    names: list[str],
    percentiles: tuple[float, float],
    water_fat: tuple[int, int] | None,
    schemes: dict[str, dict] | None = None,
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """Stack normalised ``channels`` of ``raw`` (index -> ``(X, Y, Z)``) plus FF if ``water_fat``: ``(C, X, Y, Z)``.

    ``schemes`` (the plan's ``normalization``, by channel name) marks channels normalised with the ``ct`` scheme;
    every other channel is normalised per case (:func:`normalize_channel`)."""
    stacked, params = [], {}
    for index in channels:
        name = names[index]
        scheme = (schemes or {}).get(name) or {}
        if scheme.get("scheme") == CT_SCHEME:
            normalised, params[name] = normalize_ct(raw[index], scheme, name)
        else:
            normalised, params[name] = normalize_channel(raw[index], percentiles)
        stacked.append(normalised)
    if water_fat is not None:
        stacked.append(fat_fraction(raw[water_fat[0]], raw[water_fat[1]]))
    return np.stack(stacked), params


def check_label_values(label: Volume, spec: DatasetSpec, case: str) -> np.ndarray:
    """Label array as int16 after checking every value is declared in dataset.json."""
    array = label.array
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise DataError(f"case {case!r}: label file {label.path!r} holds non-integer values")
    allowed = set(spec.labels.values()) | ({spec.ignore_label} if spec.ignore_label is not None else set())
    unknown = sorted(set(np.unique(array).astype(int).tolist()) - allowed)
    if unknown:
        raise DataError(
            f"case {case!r}: label file {label.path!r} holds values {unknown} not in dataset.json labels "
            f"{spec.labels}" + (f" (+ ignore {spec.ignore_label})" if spec.ignore_label is not None else "")
        )
    return array.astype(np.int16)


@dataclass
class RawCase:
    """One case as read, on its canonical grid, before normalisation: ``raw`` maps channel indices to float32
    ``(X, Y, Z)`` intensities, ``label`` as in :class:`Case`."""

    name: str
    raw: dict[int, np.ndarray]
    label: np.ndarray | None
    affine: np.ndarray
    reference: Volume

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along the canonical axes, ``(3,)``."""
        return voxel_spacing(self.affine)


def read_case(
    spec: DatasetSpec,
    case: str,
    channels: list[int],
    images_dir: str = "imagesTr",
    labels_dir: str | None = "labelsTr",
    ignore_index: int = 255,
) -> RawCase:
    """Read, check and canonicalise the ``channels`` (indices) and the label (optional) of one case."""
    needed = sorted(set(channels))
    files = {i: spec.root / images_dir / f"{case}_{i:04d}{spec.file_ending}" for i in needed}
    if labels_dir is not None:
        files["label"] = spec.root / labels_dir / f"{case}{spec.file_ending}"
    for key, path in files.items():
        if not path.is_file():
            raise DataError(f"case {case!r}: {_grid_name(spec, key)} file {str(path)!r} is missing")
    volumes = {key: read_volume(path, case=case) for key, path in files.items()}
    check_same_grid({_grid_name(spec, k): v for k, v in volumes.items()}, case)
    label = None
    if labels_dir is not None:
        values = check_label_values(volumes.pop("label"), spec, case)
        if spec.ignore_label is not None:
            values[values == spec.ignore_label] = ignore_index
        label = to_canonical(Volume(values, volumes[needed[0]].affine)).array
    canonical = {k: to_canonical(v) for k, v in volumes.items()}
    raw = {k: v.array.astype(np.float32, copy=False) for k, v in canonical.items()}
    return RawCase(case, raw, label, canonical[needed[0]].affine, volumes[needed[0]])


def finish_case(
    raw: RawCase,
    spec: DatasetSpec,
    channels: list[int],
    add_fat_fraction: bool = False,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    schemes: dict[str, dict] | None = None,
    target_spacing: list[float] | None = None,
) -> Case:
    """Normalise a read case (``schemes``: the plan's per-channel normalisation) and resample it to
    ``target_spacing`` (None: keep its grid)."""
    water_fat = _water_fat_indices(spec) if add_fat_fraction else None
    image, params = build_image(raw.raw, channels, spec.channel_names, percentiles, water_fat, schemes)
    return resample_case(Case(raw.name, image, raw.label, raw.affine, raw.reference, params), target_spacing)


def resample_case(case: Case, target_spacing: list[float] | None) -> Case:
    """The case's image (cubic) and label (nearest) at ``target_spacing``, its affine that of the new grid
    (:mod:`.resample`); unchanged when already there. ``reference`` still describes the original files."""
    spacing = voxel_spacing(case.affine)
    if not needs_resampling(spacing, target_spacing):
        return case
    image, _ = to_target(case.image, spacing, target_spacing)
    label = None if case.label is None else label_to_target(case.label, spacing, target_spacing)
    affine = resampled_affine(case.affine, case.image.shape[1:], image.shape[1:])
    return Case(case.name, image, label, affine, case.reference, case.normalization)


def load_case(
    spec: DatasetSpec,
    case: str,
    channels: list[int],
    images_dir: str = "imagesTr",
    labels_dir: str | None = "labelsTr",
    add_fat_fraction: bool = False,
    ignore_index: int = 255,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    schemes: dict[str, dict] | None = None,
    target_spacing: list[float] | None = None,
) -> Case:
    """Read, check, canonicalise and normalise one case (label optional), resampled to ``target_spacing``."""
    water_fat = _water_fat_indices(spec) if add_fat_fraction else ()
    raw = read_case(spec, case, sorted(set(channels) | set(water_fat)), images_dir, labels_dir, ignore_index)
    return finish_case(raw, spec, channels, add_fat_fraction, percentiles, schemes, target_spacing)


def _grid_name(spec: DatasetSpec, key: int | str) -> str:
    return "label" if key == "label" else f"channel {key} ({spec.channel_names[key]})"


def inference_channels(meta: dict, with_water_fat: bool = False) -> list[str]:
    """Channel names a prediction reads: the model's ``channels``, plus ``water`` and ``fat`` when the model
    takes the FF channel or ``with_water_fat`` (e.g. to write an FF map)."""
    extra = ["water", "fat"] if meta["add_fat_fraction"] or with_water_fat else []
    return list(dict.fromkeys(list(meta["channels"]) + extra))


def read_case_volumes(
    files: dict[str, str | os.PathLike], case: str, series: dict[str, str] | None = None
) -> dict[str, Volume]:
    """Read every ``{name: path}`` (file or DICOM directory; ``series`` picks a DICOM series per name) and
    check that they share one grid. Errors name the case and the file."""
    volumes = {name: read_volume(path, case=case, series=(series or {}).get(name)) for name, path in files.items()}
    check_same_grid(volumes, case)
    return volumes


def prepare_inference_case(volumes: dict[str, Volume], meta: dict, case: str = "input") -> Case:
    """Normalise unlabelled volumes exactly as in training (from ``meta``, a dataset's ``meta``).

    ``volumes`` maps at least the names of :func:`inference_channels` to volumes on one grid; the
    reference for writing predictions is the first model channel as read.
    """
    names = inference_channels(meta)
    missing = [n for n in names if n not in volumes]
    if missing:
        raise DataError(f"case {case!r}: no file given for channels {missing}; got {sorted(volumes)}")
    raw = {i: to_canonical(volumes[n]).array.astype(np.float32, copy=False) for i, n in enumerate(names)}
    water_fat = (names.index("water"), names.index("fat")) if meta["add_fat_fraction"] else None
    percentiles = tuple(meta["normalization"]["percentiles"])
    schemes = meta["normalization"].get("channels")
    image, params = build_image(raw, list(range(len(meta["channels"]))), names, percentiles, water_fat, schemes)
    reference = volumes[names[0]]
    return Case(case, image, None, canonical_affine(reference.affine, reference.shape), reference, params)


def extract_slice(image: np.ndarray, axis: int, index: int, context: int) -> np.ndarray:
    """``(C, X, Y, Z)`` -> ``(C * (2 * context + 1), H, W)`` around slice ``index`` of ``axis`` (0..2)."""
    depth = image.shape[axis + 1]
    neighbours = np.clip(np.arange(index - context, index + context + 1), 0, depth - 1)
    stack = np.moveaxis(np.take(image, neighbours, axis=axis + 1), axis + 1, 1)  # (C, 2k+1, H, W)
    return stack.reshape(-1, *stack.shape[2:])


def _pad(image: np.ndarray, mask: np.ndarray, shape: tuple[int, int], ignore_index: int, centre: bool) -> tuple:
    """Pad ``(C, H, W)`` / ``(H, W)`` up to at least ``shape`` (image 0, mask ``ignore_index``)."""
    extra = [max(0, s - n) for s, n in zip(shape, mask.shape)]
    before = [e // 2 if centre else 0 for e in extra]
    widths = [(b, e - b) for b, e in zip(before, extra)]
    image = np.pad(image, [(0, 0), *widths])
    mask = np.pad(mask, widths, constant_values=ignore_index)
    return image, mask


class _SliceDataset(CaseDataset):
    """Slices ``(case, index)`` of cached canonical cases along ``axis``."""

    def __init__(self, cases: list[Case], meta: dict, axis: int, context_slices: int, ignore_index: int,
                 augment=None, margin=None):
        super().__init__(cases, meta, ignore_index, augment, margin)
        self.axis = axis
        self.context = context_slices
        self.slices = [(c, s) for c, case in enumerate(cases) for s in range(case.image.shape[axis + 1])]

    def _slice(self, case_index: int, slice_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(C', H, W)`` and mask ``(H, W)`` of one slice."""
        case = self.cases[case_index]
        image = extract_slice(case.image, self.axis, slice_index, self.context)
        return image, np.take(case.label, slice_index, axis=self.axis)


class TrainSliceDataset(_SliceDataset):
    """Random ``patch_size`` crops of slices, with foreground over-sampling (see module docstring); ``augment``
    (with its ``margin``) transforms each crop."""

    def __init__(
        self,
        cases: list[Case],
        meta: dict,
        axis: int,
        context_slices: int,
        ignore_index: int,
        patch_size: tuple[int, int],
        foreground_fraction: float,
        samples_per_epoch: int | None = None,
        augment=None,
        margin=None,
    ):
        super().__init__(cases, meta, axis, context_slices, ignore_index, augment, margin)
        self.patch_size = tuple(patch_size)
        self.foreground_fraction = foreground_fraction
        self.length = samples_per_epoch or len(self.slices)
        self.foreground_slices = [(c, s) for c, s in self.slices if self._has_foreground(cases[c].label, s)]

    def _has_foreground(self, label: np.ndarray, index: int) -> bool:
        return bool(foreground(np.take(label, index, axis=self.axis), self.ignore_index).any())

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        focus = bool(self.foreground_slices) and torch.rand(()).item() < self.foreground_fraction
        if focus:
            case_index, slice_index = self.foreground_slices[int(torch.randint(len(self.foreground_slices), ()))]
        else:
            case_index, slice_index = self.slices[index % len(self.slices)]
        image, mask = self._slice(case_index, slice_index)
        pixel = None
        if focus:
            pixels = np.argwhere(foreground(mask, self.ignore_index))
            pixel = pixels[int(torch.randint(len(pixels), ()))]
        return self._patch(image, mask, window_starts(mask.shape, self.patch_size, pixel), self.patch_size)


class EvalSliceDataset(_SliceDataset):
    """Every slice whole, padded bottom/right to one shape (see module docstring)."""

    def __init__(
        self, cases: list[Case], meta: dict, axis: int, context_slices: int, ignore_index: int, size_divisor: int = 32
    ):
        super().__init__(cases, meta, axis, context_slices, ignore_index)
        plane = [max(np.delete(case.image.shape[1:], axis)[i] for case in cases) for i in range(2)]
        self.pad_shape = tuple(int(math.ceil(n / size_divisor) * size_divisor) for n in plane)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self._slice(*self.slices[index])
        return to_sample(*_pad(image, mask, self.pad_shape, self.ignore_index, centre=False))


def split_cases(
    cases: list[str], val_fraction: float, val_cases: list[str] | None, seed: int
) -> tuple[list[str], list[str]]:
    """Split case names (never slices): the requested k-fold (``fold=K``, :mod:`segsuite.core.folds`), explicit
    ``val_cases``, or a seeded random ``val_fraction``."""
    chosen = folds.assign(cases) if val_cases is None else None
    if chosen is not None:
        return chosen
    if val_cases is not None:
        unknown = sorted(set(val_cases) - set(cases))
        if unknown:
            raise ConfigError(f"val_cases {unknown} are not in the data set; cases: {cases}")
        val = sorted(set(val_cases))
    else:
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}; or give val_cases")
        count = min(len(cases) - 1, max(1, round(len(cases) * val_fraction)))
        order = np.random.default_rng(seed).permutation(len(cases))
        val = sorted(cases[i] for i in order[:count])
    train = [c for c in cases if c not in val]
    if not train or not val:
        raise ConfigError(f"split leaves {len(train)} training and {len(val)} validation cases; need at least 1 each")
    return train, val


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


def ensure_root(
    root: str | os.PathLike,
    synthetic_if_missing: bool = False,
    synthetic_cases: int = 8,
    synthetic_shape: list[int] = (64, 64, 24),
    seed: int = 0,
) -> Path:
    """``root`` as a Path; a missing root is generated as a phantom data set if ``synthetic_if_missing``.

    The phantom is written into a temporary sibling folder that is renamed to ``root`` when complete, so an
    interrupted run never leaves half a data set behind.
    """
    root_path = Path(root)
    if root_path.exists():
        return root_path
    if not synthetic_if_missing:
        raise DataError(
            f"data set root {str(root_path)!r} does not exist (set synthetic_if_missing to generate a phantom)"
        )
    root_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root_path.name}.", dir=root_path.parent))
    try:
        make_dataset(staging, n_cases=synthetic_cases, shape=tuple(synthetic_shape), seed=seed)
        os.replace(staging, root_path)
    except OSError:
        if not root_path.exists():  # a concurrent run may have created it first: then use that one
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root_path


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
    train_names, val_names = split_cases(list_cases(spec), val_fraction, val_cases, seed)
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
    options = dict(foreground_fraction=foreground_fraction, samples_per_epoch=samples_per_epoch, augment=augment,
                   margin=margin)
    if spatial_dims == 3:
        return _volume_datasets(train, val, test, meta, patch, seed=seed, **options)
    return _slice_datasets(train, val, test, meta, patch, size_divisor, **options)


def _slice_datasets(train, val, test, meta, patch, size_divisor, samples_per_epoch, **options) -> dict[str, Dataset]:
    common = dict(meta=meta, axis=meta["axis"], context_slices=meta["context_slices"],
                  ignore_index=meta["ignore_index"])
    datasets = {
        "train": TrainSliceDataset(train, **common, patch_size=tuple(patch), samples_per_epoch=samples_per_epoch,
                                   **options),
        "val": EvalSliceDataset(val, **common, size_divisor=size_divisor),
    }
    if test is not None:
        datasets["test"] = EvalSliceDataset(test, **common, size_divisor=size_divisor)
    return datasets


def _volume_datasets(train, val, test, meta, patch, samples_per_epoch, seed, **options) -> dict[str, Dataset]:
    samples = samples_per_epoch or ITERATIONS_PER_EPOCH * meta["batch_size"]
    ignore = meta["ignore_index"]
    datasets = {
        "train": TrainPatchDataset(train, meta, ignore, patch, samples_per_epoch=samples, seed=seed, **options),
        "val": EvalPatchDataset(val, meta, ignore, patch),
    }
    if test is not None:
        datasets["test"] = EvalPatchDataset(test, meta, ignore, patch)
    return datasets
