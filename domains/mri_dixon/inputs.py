"""What an MRI input is: channel files grouped into cases (``CASE_0000.nii.gz``, a list, a folder, DICOM series),
and the checkpoint checked to be a Dixon model, with the flips its test-time augmentation may use."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segsuite.core.contracts import DataMeta, Job
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.inference import TilePredictor
from segsuite.core.io import pattern_matches

from .io import (
    NIFTI_SUFFIXES,
    SITK_SUFFIXES,
    list_dicom_series,
    pick_series,
)

log = logging.getLogger(__name__)

VOLUME_ENDINGS = NIFTI_SUFFIXES[::-1] + SITK_SUFFIXES  # ".nii.gz" before ".nii"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})(?P<ending>\.nii\.gz|\.nii|\.mha|\.mhd|\.nrrd|\.nhdr)$",
                          re.IGNORECASE)
META_KEYS = ("channels", "axis", "context_slices", "add_fat_fraction", "normalization", "labels")
LATERAL_WORDS = {"left", "right"}
Cases = dict[str, dict[str, Path]]  # case -> channel name -> file or DICOM folder


def volume_stem(path: Path) -> str:
    """File name without its image ending (``a.nii.gz`` -> ``a``); folders keep their name."""
    name = path.name
    ending = next((e for e in VOLUME_ENDINGS if name.lower().endswith(e)), "")
    return name[: len(name) - len(ending)]


def _group_channel_files(paths: Sequence[Path], meta: DataMeta, names: list[str]) -> Cases:
    """nnU-Net named files ``CASE_NNNN<ending>`` -> ``{case: {channel name: path}}``, all ``names`` present."""
    channels = list(meta.get("dataset_channels", meta["channels"]))
    groups: Cases = {}
    for path in sorted(paths):
        match = CHANNEL_FILE.match(path.name)
        if int(match["index"]) >= len(channels):
            raise DataError(f"case {match['case']!r}: file {str(path)!r} has channel index {int(match['index'])}, but "
                            f"the model's dataset.json has channels {dict(enumerate(channels))}")
        groups.setdefault(match["case"], {})[channels[int(match["index"])]] = path
    for case, files in groups.items():
        first = next(iter(files.values()))
        ending = CHANNEL_FILE.match(first.name)["ending"]
        missing = [f"{str(first.parent / f'{case}_{channels.index(n):04d}{ending}')!r} ({n})" if n in channels else
                   f"{n!r} (not a channel of the model's dataset.json: {channels})" for n in names if n not in files]
        if missing:
            raise DataError(f"case {case!r}: missing channel file(s) {', '.join(missing)}")
        groups[case] = {n: files[n] for n in names}
    return groups


def _ordered_files(paths: Sequence[Path], names: list[str]) -> Cases:
    """Files given in the model's channel order -> one case named after the first file."""
    if len(paths) != len(names):
        raise DataError(f"got {len(paths)} input files ({', '.join(map(str, paths))}); expected {len(names)}, one "
                        f"per channel in this order: {', '.join(names)} (or nnU-Net names CASE_NNNN.nii.gz)")
    return {volume_stem(paths[0]): dict(zip(names, paths))}


def _from_list(paths: Sequence[Path], meta: DataMeta, names: list[str]) -> Cases:
    missing = next((p for p in paths if not p.exists()), None)
    if missing is not None:
        raise DataError(f"input file {str(missing)!r} does not exist")
    if paths and all(CHANNEL_FILE.match(p.name) for p in paths):
        return _group_channel_files(paths, meta, names)
    return _ordered_files(paths, names)


def _from_folder(folder: Path, meta: DataMeta, names: list[str], series: Mapping[str, str]) -> Cases:
    """An nnU-Net images folder, a case folder with one entry per channel, or one DICOM folder."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    channel_files = [p for p in entries if p.is_file() and CHANNEL_FILE.match(p.name)]
    if channel_files:
        return _group_channel_files(channel_files, meta, names)
    by_name = {volume_stem(p).lower(): p for p in entries}
    if any(n.lower() in by_name for n in names):
        missing = [n for n in names if n.lower() not in by_name]
        if missing:
            raise DataError(f"case {folder.name!r}: no entry for channel(s) {missing} in {str(folder)!r} "
                            f"(expected e.g. {str(folder / missing[0])!r} or {str(folder / missing[0])!r}.nii.gz)")
        return {folder.name: {n: by_name[n.lower()] for n in names}}
    _check_dicom_selection(folder, names, series)
    return {folder.name: dict.fromkeys(names, folder)}


def _check_dicom_selection(folder: Path, names: list[str], series: Mapping[str, str]) -> None:
    """One DICOM folder for every channel: one series, or a ``series`` entry per channel that matches one."""
    found = list_dicom_series(folder)
    if not found:
        raise DataError(f"case {folder.name!r}: input folder {str(folder)!r} holds no DICOM series and no channel "
                        f"files (expected CASE_0000.nii.gz..., {names[0]}/ or {names[0]}.nii.gz)")
    if len(names) == 1 and len(found) == 1 and names[0] not in series:
        return
    for name in names:
        if name not in series:
            listing = "; ".join(f"uid={s['uid']} description={s['description']!r}" for s in found)
            raise DataError(f"case {folder.name!r}: DICOM folder {str(folder)!r} holds {len(found)} series "
                            f"({listing}); map each channel to one with domain.reader.series='{{{names[0]}: <uid or "
                            f"description>, ...}}' (channels: {', '.join(names)})")
        try:
            pick_series(found, series[name], folder)
        except DataError as err:
            raise DataError(f"case {folder.name!r}, channel {name!r}: {err}") from None


def collect_cases(input: Any, meta: DataMeta, names: list[str], series: Mapping[str, str]) -> Cases:
    """``{case: {channel name: path}}`` for every input form of the module docstring."""
    if isinstance(input, Mapping):
        files = {str(k): Path(str(v)) for k, v in input.items()}
        missing = [n for n in names if n not in files]
        if missing:
            raise DataError(f"input mapping has no file for channel(s) {missing}; it names {sorted(files)}")
        return _from_list([files[n] for n in names], meta, names)
    if isinstance(input, Sequence) and not isinstance(input, str):
        return _from_list([Path(str(p)) for p in input], meta, names)
    if (matches := pattern_matches(input)) is not None:
        return _from_list(matches, meta, names)
    path = Path(str(input))
    if path.is_dir():
        return _from_folder(path, meta, names, series)
    if not path.exists():
        raise DataError(f"input {str(path)!r} does not exist (give a case folder, channel files or a DICOM folder)")
    return _from_list([path], meta, names)


def _lateral_labels(meta: DataMeta | dict) -> list[str]:
    return [n for n in meta["labels"] if LATERAL_WORDS & set(re.split(r"[^a-z]+", n.lower()))]


def check_tta_flips(predictor: TilePredictor, meta: DataMeta | dict) -> None:
    """Drop the left-right flip from the predictor's TTA when label names are lateralised; a 3D model mirrors as
    nnU-Net does (:func:`volume_tta_flips`).

    Slices ``(C, H, W)`` of the RAS+ volume have H along R-L for ``axis`` 1 and 2 (tensor dim -2 flips left-right)
    and no left-right axis for ``axis`` 0. Flipping turns a left kidney into a right one: fine for one ``kidneys``
    label, wrong for ``kidney_left`` / ``kidney_right``, so that flip is removed (with a warning) for such labels.
    """
    if not predictor.tta_flips:
        return
    if is_volumetric(meta):
        predictor.tta_flips = volume_tta_flips(meta, warn=predictor.tta_flips != volume_tta_flips(meta))
        return
    if meta["axis"] == 0:
        return
    lateral = _lateral_labels(meta)
    kept = [d for d in predictor.tta_flips if (d if d < 0 else d - 4) != -2]
    if lateral and kept != list(predictor.tta_flips):
        log.warning("left-right flip TTA would swap the lateralised labels %s; using flips %s only", lateral, kept)
        predictor.tta_flips = kept


def volume_tta_flips(meta: DataMeta | dict, warn: bool = False) -> list[tuple[int, ...]]:
    """Mirror TTA of a 3D model: every combination of the volume's axes (7 extra passes, as nnU-Net), without the
    left-right axis when labels are lateralised (see :func:`check_tta_flips`). Batches are ``(B, C, X, Y, Z)`` of the
    RAS+ volume, so dim -3 runs left-right."""
    axes = (-3, -2, -1)
    lateral = _lateral_labels(meta)
    if lateral:
        axes = (-2, -1)
    if lateral and warn:
        log.warning("left-right mirroring would swap the lateralised labels %s; mirroring along A and S only", lateral)
    return [flip for n in range(1, len(axes) + 1) for flip in itertools.combinations(axes, n)]


def is_volumetric(meta: DataMeta | dict) -> bool:
    """True for a 3D model (``model=unet3d``): it predicts whole volumes by 3D windows."""
    return meta.get("spatial_dims") == 3


def check_checkpoint(job: Job) -> DataMeta:
    """The checkpoint's data meta, checked to come from Dixon data; the tile checked against its size divisor
    (2D) or to have three values (3D)."""
    meta = job.model.meta
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ConfigError(f"the checkpoint's data metadata lacks {missing}: it was not trained on mri_dixon data")
    tile, divisor = job.options.tile if job.options else None, int(meta.get("size_divisor", 32))
    if is_volumetric(meta) and tile is not None and len(tile) != 3:
        raise ConfigError(f"domain.inference.tile={list(tile)}: a 3D model takes [x, y, z] windows in voxels of "
                          f"its training spacing, or null (its training patch {list(meta['patch_size'])})")
    if not is_volumetric(meta) and tile is not None and len(tile) != 2:
        raise ConfigError(f"domain.inference.tile={list(tile)}: a 2D model takes [h, w] windows inside slices, or "
                          "null (whole slices)")
    if not is_volumetric(meta) and tile is not None and any(t % divisor for t in tile):
        raise ConfigError(f"domain.inference.tile={list(tile)}: null (whole slices) or [h, w] in multiples of "
                          f"{divisor}")
    return meta
