"""nnU-Net raw-layout cases: ``dataset.json``, the case list, reading one case's channel files into a checked,
normalised, canonical (closest RAS+) :class:`Case`, and the same for an inference input (see :mod:`.dataset`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.quantiles import tail_percentiles
from segsuite.core.workers import thread_map

from .fatfraction import fat_fraction
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
from .plan import CT as CT_SCHEME
from .resample import label_to_target, needs_resampling, resampled_affine, to_target

log = logging.getLogger(__name__)

DEFAULT_PERCENTILES = (0.5, 99.5)
FF_CHANNEL = "fat_fraction"


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
    array: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, out: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Clip to the array's own percentiles, then z-score; returns float32 array (``out`` when given: written in its
    layout, as a channel of a stacked image) and the numbers used."""
    low, high = (float(v) for v in tail_percentiles(array, percentiles))  # np.percentile's, a sixth the time
    clipped = np.clip(array, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    numbers = {"low": low, "high": high, "mean": mean, "std": std}
    if clipped.dtype == np.float32:  # in place, or straight into out: float32 as (clipped - mean) / std would be
        normalised = np.subtract(clipped, mean, out=clipped if out is None else out)
        return np.divide(normalised, max(std, 1e-8), out=normalised), numbers
    normalised = ((clipped - mean) / max(std, 1e-8)).astype(np.float32, copy=False)  # integer voxels: in float64
    if out is not None:
        out[...] = normalised
    return (normalised if out is None else out), numbers


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
    """Stack normalised ``channels`` of ``raw`` (index -> ``(X, Y, Z)``) plus FF if ``water_fat``: ``(C, X, Y, Z)``,
    each channel in the voxel order of ``raw`` (a NIfTI's Fortran order: an axial slice is one block of memory).

    ``schemes`` (the plan's ``normalization``, by channel name) marks channels normalised with the ``ct`` scheme;
    every other channel is normalised per case (:func:`normalize_channel`)."""
    first, extra = raw[channels[0]], water_fat is not None
    fortran = first.flags.f_contiguous and not first.flags.c_contiguous  # NIfTI's order: x fastest, z slowest
    image = np.empty((len(channels) + extra, *first.shape[:: -1 if fortran else 1]), np.float32)  # filled in place
    image = image.transpose(0, 3, 2, 1) if fortran else image

    def one(slot: int) -> dict[str, float]:
        index = channels[slot]
        scheme = (schemes or {}).get(names[index]) or {}
        if scheme.get("scheme") == CT_SCHEME:
            image[slot], numbers = normalize_ct(raw[index], scheme, names[index])
            return numbers
        return normalize_channel(raw[index], percentiles, out=image[slot])[1]

    done = thread_map(one, range(len(channels)))  # numpy releases the GIL: a core each
    params = {names[i]: p for i, p in zip(channels, done, strict=True)}
    if extra:
        image[-1] = fat_fraction(raw[water_fat[0]], raw[water_fat[1]])
    return image, params


def check_label_values(label: Volume, spec: DatasetSpec, case: str, ignore_index: int | None = None) -> np.ndarray:
    """Label array as int16 after checking every value is declared in dataset.json; the ``ignore`` label's voxels
    carry ``ignore_index`` when given."""
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
    values = array.astype(np.int16)
    if spec.ignore_label is not None and ignore_index is not None:
        values[values == spec.ignore_label] = ignore_index
    return values


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
        values = check_label_values(volumes.pop("label"), spec, case, ignore_index)
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


def load_case(spec: DatasetSpec, case: str, channels: list[int], images_dir: str = "imagesTr",
              labels_dir: str | None = "labelsTr", ignore_index: int = 255, **options) -> Case:
    """:func:`read_case` then :func:`finish_case` (``options``: its normalisation, FF channel and target spacing)."""
    water_fat = _water_fat_indices(spec) if options.get("add_fat_fraction") else ()
    raw = read_case(spec, case, sorted(set(channels) | set(water_fat)), images_dir, labels_dir, ignore_index)
    return finish_case(raw, spec, channels, **options)


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
    raw = dict(enumerate(thread_map(lambda n: to_canonical(volumes[n]).array.astype(np.float32, copy=False), names)))
    water_fat = (names.index("water"), names.index("fat")) if meta["add_fat_fraction"] else None
    percentiles = tuple(meta["normalization"]["percentiles"])
    schemes = meta["normalization"].get("channels")
    image, params = build_image(raw, list(range(len(meta["channels"]))), names, percentiles, water_fat, schemes)
    reference = volumes[names[0]]
    return Case(case, image, None, canonical_affine(reference.affine, reference.shape), reference, params)


