"""Whole-volume Dixon prediction: channel images in, a label volume with exactly the input's geometry out.

How the channels of a case are given (``input=``); the model's channels are its checkpoint's ``channels``
(e.g. water, fat, in_phase, out_phase), plus ``water`` and ``fat`` when it takes the fat-fraction channel or
``fat_fraction=true`` asks for an FF map:

* an nnU-Net images folder or case folder: ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``... (the 4-digit index
  is the channel's index in the training ``dataset.json``; ``.nii``, ``.mha``, ``.mhd``, ``.nrrd`` also do).
  A folder holding several cases predicts them all (``output`` is then a folder);
* a case folder with one entry per channel named after it: ``water/``, ``fat/``... (DICOM series folders)
  or ``water.nii.gz``, ``fat.mha``...;
* one DICOM folder holding a series per channel, chosen with ``series={water: <SeriesInstanceUID or
  SeriesDescription>, fat: ...}`` (a single-channel model needs no ``series`` if the folder holds one series);
* a list (``input='[a_0000.nii.gz,a_0001.nii.gz]'``) or a glob (``input='case/a_000?.nii.gz'``) of files
  named as in nnU-Net, or of any files/DICOM folders given in the model's channel order;
* a mapping ``input='{water: w.nii.gz, fat: dicom/fat}'``.

Outputs: ``output=OUT.nii.gz`` (one case), or ``output=FOLDER`` (``FOLDER/CASE.nii.gz`` per case). The label
volume is uint8 (int16 beyond 255 classes) with the input's shape, affine and NIfTI qform/sform codes; DICOM,
MHA or NRRD input gives a NIfTI with the equivalent affine. ``fat_fraction=true`` adds ``OUT_fatfraction.nii.gz``
(float32 FF in [0, 1], 0 where the signal is too low; see :mod:`.fatfraction`). ``task=instance`` adds
``OUT_instances.nii.gz`` (int32 instance ids of the thing classes, ``domain.things``) and ``OUT_instances.csv``
(volume, centroid, box and mean FF per instance); ``task=panoptic`` also ``OUT_panoptic.nii.gz`` (label-divisor
encoding, category * 1000 + k) and ``OUT_panoptic.json``: see :mod:`.instances`. Every input and output is
checked before the model runs; all outputs are written to temporary files and renamed only when every case
has succeeded, so an error leaves no partial output.

Inference: each slice of the canonical (RAS+) volume along the checkpoint's ``axis`` (with its 2.5D
neighbours) is one :class:`~core.inference.Source` of :func:`core.inference.sliding_window`, zero-padded
(as in validation) to a multiple of the checkpoint's ``size_divisor``; with ``tile=null`` a tile is a whole
slice, so slices are batched together. The volume is laid out slice-major once, so a slice read is a view.
Flip TTA (``tta=true``) is done by the core predictor; a left-right flip is dropped when label names are
lateralised (``kidney_left``...), see :func:`check_tta_flips`. Instances are cut from the whole label volume
once it is back on the input's axes; a model's border channel is stacked into a probability volume alike.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from core.errors import ConfigError, DataError
from core.inference import TilePredictor, Window, sliding_window
from core.instances import Instancer
from core.io import atomic_path, check_writable
from core.predict import output_channels
from core.task import SegmentationTask

from .dataset import Case, inference_channels, prepare_inference_case, read_case_volumes, stack_slices
from .fatfraction import fat_fraction as fat_fraction_map
from .instances import check_mode, instance_paths, write_instance_outputs
from .io import NIFTI_SUFFIXES, SITK_SUFFIXES, Volume, list_dicom_series, write_label, write_nifti

log = logging.getLogger(__name__)

VOLUME_ENDINGS = NIFTI_SUFFIXES[::-1] + SITK_SUFFIXES  # ".nii.gz" before ".nii"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})(?P<ending>\.nii\.gz|\.nii|\.mha|\.mhd|\.nrrd|\.nhdr)$",
                          re.IGNORECASE)
FF_SUFFIX = "_fatfraction"
META_KEYS = ("channels", "axis", "context_slices", "add_fat_fraction", "normalization", "labels")
LATERAL_WORDS = {"left", "right"}


@dataclass(frozen=True)
class CaseJob:
    """One case: its channel files (name -> file or DICOM folder) and every file it will produce (``instances``:
    :func:`.instances.instance_paths`)."""

    case: str
    files: dict[str, Path]
    output: Path
    fat_fraction: Path | None
    instances: dict[str, Path] = field(default_factory=dict)

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.output, self.fat_fraction, *self.instances.values()) if p is not None]


class SliceSource:
    """Slice ``index`` of a slice-major stack ``(N, C, H, W)`` with its 2.5D neighbours, as a core ``Source``."""

    def __init__(self, stack: np.ndarray, index: int, context: int) -> None:
        self.stack, self.index, self.context = stack, index, context
        self.shape = tuple(int(n) for n in stack.shape[2:])  # (H, W)

    def read(self, window: Window) -> np.ndarray:
        """``(C * (2k + 1), h, w)`` float32, channel-major as :func:`.dataset.extract_slice`."""
        r, c, h, w = window
        if self.context == 0:
            return self.stack[self.index, :, r : r + h, c : c + w]
        k, last = self.context, self.stack.shape[0] - 1
        neighbours = np.clip(np.arange(self.index - k, self.index + k + 1), 0, last)  # edge slices replicated
        block = self.stack[neighbours, :, r : r + h, c : c + w]  # (2k + 1, C, h, w)
        return block.transpose(1, 0, 2, 3).reshape(-1, h, w)

    def skip(self, window: Window) -> bool:
        return False


def dixon_meta(task: SegmentationTask) -> dict:
    """The checkpoint's data ``meta``, checked to come from a Dixon data set."""
    meta = dict(task.hparams.get("data_meta") or {})
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ConfigError(f"the checkpoint's data metadata lacks {missing}: it was not trained on mri_dixon data")
    return meta


def volume_stem(path: Path) -> str:
    """File name without its image ending (``a.nii.gz`` -> ``a``); folders keep their name."""
    name = path.name
    for ending in VOLUME_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name


def beside(path: Path, suffix: str) -> Path:
    """``OUT.nii.gz`` -> ``OUT<suffix>.nii.gz``."""
    ending = path.name[len(volume_stem(path)):]
    return path.with_name(volume_stem(path) + suffix + ending)


def _group_channel_files(paths: Sequence[Path], meta: dict, names: list[str]) -> dict[str, dict[str, Path]]:
    """nnU-Net named files ``CASE_NNNN<ending>`` -> ``{case: {channel name: path}}``, all ``names`` present."""
    dataset_channels = list(meta.get("dataset_channels", meta["channels"]))
    groups: dict[str, dict[str, Path]] = {}
    endings: dict[str, tuple[Path, str]] = {}
    for path in sorted(paths):
        match = CHANNEL_FILE.match(path.name)
        index = int(match["index"])
        if index >= len(dataset_channels):
            raise DataError(f"case {match['case']!r}: file {str(path)!r} has channel index {index}, but the model's "
                            f"dataset.json has channels {dict(enumerate(dataset_channels))}")
        groups.setdefault(match["case"], {})[dataset_channels[index]] = path
        endings.setdefault(match["case"], (path.parent, match["ending"]))
    for case, files in groups.items():
        missing = [n for n in names if n not in files]
        if missing:
            folder, ending = endings[case]
            expected = ", ".join(_expected_file(folder, case, n, dataset_channels, ending) for n in missing)
            raise DataError(f"case {case!r}: missing channel file(s) {expected}")
        groups[case] = {n: files[n] for n in names}
    return groups


def _expected_file(folder: Path, case: str, name: str, dataset_channels: list[str], ending: str) -> str:
    if name not in dataset_channels:
        return f"{name!r} (not a channel of the model's dataset.json: {dataset_channels})"
    return f"{str(folder / f'{case}_{dataset_channels.index(name):04d}{ending}')!r} ({name})"


def _ordered_files(paths: Sequence[Path], names: list[str]) -> dict[str, dict[str, Path]]:
    """Files given in the model's channel order -> one case named after the first file."""
    if len(paths) != len(names):
        raise DataError(f"got {len(paths)} input files ({', '.join(map(str, paths))}); expected {len(names)}, one "
                        f"per channel in this order: {', '.join(names)} (or nnU-Net names CASE_NNNN.nii.gz)")
    for path in paths:
        if not path.exists():
            raise DataError(f"input file {str(path)!r} does not exist")
    return {volume_stem(paths[0]): dict(zip(names, paths))}


def _from_list(paths: Sequence[Path], meta: dict, names: list[str]) -> dict[str, dict[str, Path]]:
    if paths and all(CHANNEL_FILE.match(p.name) for p in paths):
        for path in paths:
            if not path.exists():
                raise DataError(f"input file {str(path)!r} does not exist")
        return _group_channel_files(paths, meta, names)
    return _ordered_files(paths, names)


def _from_folder(folder: Path, meta: dict, names: list[str], series: Mapping[str, str]) -> dict[str, dict[str, Path]]:
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
    """A DICOM folder for every channel: needs one series, or a ``series`` entry per channel that exists."""
    found = list_dicom_series(folder)
    listing = "; ".join(f"uid={s['uid']} description={s['description']!r}" for s in found)
    if not found:
        raise DataError(f"case {folder.name!r}: input folder {str(folder)!r} holds no DICOM series and no channel "
                        f"files (expected CASE_0000.nii.gz..., {names[0]}/ or {names[0]}.nii.gz)")
    if len(names) == 1 and len(found) == 1 and names[0] not in series:
        return
    for name in names:
        wanted = series.get(name)
        if wanted is None:
            raise DataError(f"case {folder.name!r}: DICOM folder {str(folder)!r} holds {len(found)} series "
                            f"({listing}); map each channel to one with domain.predict.series='{{{names[0]}: <uid or "
                            f"description>, ...}}' (channels: {', '.join(names)})")
        matches = [s for s in found if wanted in (s["uid"], s["description"])]
        if len(matches) != 1:
            problem = "no series matches" if not matches else f"{len(matches)} series match"
            raise DataError(f"case {folder.name!r}: DICOM folder {str(folder)!r}: {problem} {wanted!r} for channel "
                            f"{name!r}; available: {listing}")


def collect_cases(input: str | Sequence | Mapping, meta: dict, names: list[str],
                  series: Mapping[str, str] | None = None) -> dict[str, dict[str, Path]]:
    """``{case: {channel name: path}}`` for every input form of the module docstring."""
    series = dict(series or {})
    unknown = sorted(set(series) - set(names))
    if unknown:
        raise ConfigError(f"series names channels {unknown} that this prediction does not read; channels: {names}")
    if isinstance(input, Mapping):
        files = {str(k): Path(str(v)) for k, v in input.items()}
        missing = [n for n in names if n not in files]
        if missing:
            raise DataError(f"input mapping has no file for channel(s) {missing}; it names {sorted(files)}")
        return _ordered_files([files[n] for n in names], names)
    if isinstance(input, Sequence) and not isinstance(input, str):
        return _from_list([Path(str(p)) for p in input], meta, names)
    if glob.has_magic(str(input)):
        matches = sorted(glob.glob(str(input)))
        if not matches:
            raise DataError(f"input pattern {str(input)!r} matches no files")
        return _from_list([Path(p) for p in matches], meta, names)
    path = Path(str(input))
    if path.is_dir():
        return _from_folder(path, meta, names, series)
    if not path.exists():
        raise DataError(f"input {str(path)!r} does not exist (give a case folder, channel files or a DICOM folder)")
    return _from_list([path], meta, names)


def plan(input, output: str | os.PathLike, meta: dict, fat_fraction: bool = False,
         series: Mapping[str, str] | None = None, mode: str = "semantic") -> list[CaseJob]:
    """Jobs for every input case, with their output paths (see the module docstring; ``mode``: semantic,
    instance or panoptic)."""
    names = inference_channels(meta, with_water_fat=fat_fraction)
    cases = collect_cases(input, meta, names, series)
    out = Path(str(output))
    if out.name.lower().endswith(NIFTI_SUFFIXES):
        if len(cases) != 1:
            raise DataError(f"the input holds {len(cases)} cases ({', '.join(cases)}); give an output folder, "
                            f"not the file name {str(out)!r}")
        outputs = {next(iter(cases)): out}
    elif out.exists() and not out.is_dir():
        raise DataError(f"output {str(out)!r} must be a .nii/.nii.gz file name or a folder")
    else:
        outputs = {case: out / f"{case}.nii.gz" for case in cases}
    jobs = [CaseJob(case, files, outputs[case], beside(outputs[case], FF_SUFFIX) if fat_fraction else None,
                    instance_paths(outputs[case], volume_stem(outputs[case]), mode))
            for case, files in cases.items()]
    inputs = {p.resolve() for job in jobs for p in job.files.values()}
    seen: dict[Path, str] = {}
    for job in jobs:
        clash = [p for p in job.outputs if p.resolve() in inputs]
        if clash:
            raise DataError(f"case {job.case!r}: output {str(clash[0])!r} is one of the input files")
        for path in job.outputs:
            if path.resolve() in seen:
                raise DataError(f"cases {seen[path.resolve()]!r} and {job.case!r} would both write {str(path)!r}; "
                                f"rename one of them")
            seen[path.resolve()] = job.case
    return jobs


def check_tta_flips(predictor: TilePredictor, meta: dict) -> None:
    """Drop the left-right flip from the predictor's TTA when label names are lateralised.

    Slices ``(C, H, W)`` of the canonical RAS+ volume have H along R-L for ``axis`` 1 and 2 (so tensor dim -2
    flips left-right and -1 anterior-posterior or superior-inferior), and no left-right axis for ``axis`` 0.
    Flipping left-right turns a left kidney into a right one: fine for one ``kidneys`` label, wrong for
    ``kidney_left`` / ``kidney_right``, so that flip is removed (with a warning) for such label sets.
    """
    if meta["axis"] == 0 or not predictor.tta_flips:
        return
    lateral = [n for n in meta["labels"] if LATERAL_WORDS & set(re.split(r"[^a-z]+", n.lower()))]
    if not lateral:
        return
    kept = [d for d in predictor.tta_flips if (d if d < 0 else d - 4) != -2]
    if kept != list(predictor.tta_flips):
        log.warning("left-right flip TTA would swap the lateralised labels %s; using flips %s only", lateral, kept)
        predictor.tta_flips = kept


def slice_stack(case: Case, axis: int, divisor: int, tile: Sequence[int] | None = None) -> np.ndarray:
    """Every slice of the case image along ``axis``, contiguous ``(N, C, H', W')``: zero-padded at the end of
    both in-plane axes to a multiple of ``divisor`` (and at least ``tile``), as validation slices in training.
    One (multi-threaded) pass over the volume, so that reading a slice is a contiguous view."""
    image = torch.from_numpy(case.image).movedim(axis + 1, 0)  # (N, C, H, W), a strided view
    n, c, h, w = image.shape
    target = (h, w) if tile is None else (max(h, int(tile[0])), max(w, int(tile[1])))
    size = [math.ceil(t / divisor) * divisor for t in target]
    stack = torch.zeros((n, c, *size), dtype=torch.float32)
    stack[:, :, :h, :w] = image
    return stack.numpy()


def predict_volume(predictor: TilePredictor, case: Case, meta: dict, num_classes: int, batch_size: int = 16,
                   tile: Sequence[int] | None = None, overlap: Sequence[int] = (0, 0), blend: str = "gaussian",
                   progress: bool | str = False) -> np.ndarray:
    """Labels of every slice of a canonical case, stacked into a canonical volume ``(X, Y, Z)`` (uint8/int16).

    ``tile=None``: each slice is one tile (padded to ``meta["size_divisor"]``), so the batch holds
    ``batch_size`` slices; else ``tile`` ``(h, w)`` windows with ``overlap`` inside each slice.
    """
    return predict_maps(predictor, case, meta, num_classes, None, batch_size, tile, overlap, blend, progress)[0]


def predict_maps(predictor: TilePredictor, case: Case, meta: dict, num_classes: int, channels: int | None = None,
                 batch_size: int = 16, tile: Sequence[int] | None = None, overlap: Sequence[int] = (0, 0),
                 blend: str = "gaussian", progress: bool | str = False) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`predict_volume`, plus the border probability volume ``(X, Y, Z)`` float32 (sigmoid of the last
    logit, as :func:`core.instances.split_logits`) when the predictor returns ``channels = num_classes + 1``."""
    channels = num_classes if channels is None else int(channels)
    axis, context = int(meta["axis"]), int(meta["context_slices"])
    height, width = (int(n) for n in np.delete(case.image.shape[1:], axis))
    stack = slice_stack(case, axis, int(meta.get("size_divisor", 32)), tile)
    sources = [SliceSource(stack, i, context) for i in range(stack.shape[0])]
    tile = tuple(tile) if tile is not None else sources[0].shape
    dtype = torch.uint8 if num_classes <= 256 else torch.int16
    labels = torch.empty((len(sources), height, width), dtype=dtype, device=predictor.device)  # (N, H, W)
    border = None  # (N, H, W) float32 border probabilities when the predictor returns them
    if channels > num_classes:
        border = torch.empty(labels.shape, dtype=torch.float32, device=predictor.device)
    for index, row, logits, _ in sliding_window(predictor, sources, channels, tile=tile, overlap=tuple(overlap),
                                                batch_size=batch_size, blend=blend, progress=progress):
        rows = min(logits.shape[1], height - row)
        if rows > 0:
            block = logits[:, :rows, :width]  # (channels, rows, W)
            labels[index, row : row + rows] = block[:num_classes].argmax(0).to(dtype)
            if border is not None:
                border[index, row : row + rows] = torch.sigmoid(block[num_classes].float())
    probability = None if border is None else stack_slices(border.cpu().numpy(), axis)
    return stack_slices(labels.cpu().numpy(), axis), probability


def keep_largest_components(label: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Keep only the largest 26-connected component of each label in ``values``; the rest becomes 0."""
    out = label.copy()
    structure = ndimage.generate_binary_structure(3, 3)
    for value in values:
        mask = label == value
        boxes = ndimage.find_objects(mask.astype(np.uint8))
        if not boxes:
            continue
        box = boxes[0]
        components, count = ndimage.label(mask[box], structure)
        if count > 1:
            largest = np.bincount(components.ravel())[1:].argmax() + 1
            out[box][(components > 0) & (components != largest)] = 0
    return out


def cleanup_values(largest_component: bool | Sequence[str], meta: dict) -> list[int]:
    """Label values for :func:`keep_largest_components`: all foreground labels (``true``) or the named ones."""
    labels = {k: v for k, v in meta["labels"].items() if v != 0}
    if largest_component is True:
        return sorted(labels.values())
    if not largest_component:
        return []
    if isinstance(largest_component, str):
        largest_component = [largest_component]
    unknown = [n for n in largest_component if n not in labels]
    if unknown:
        raise ConfigError(f"largest_component names unknown labels {unknown}; labels: {sorted(labels)}")
    return [labels[n] for n in largest_component]


def check_tile(tile: Sequence[int] | None, overlap: Sequence[int], divisor: int) -> None:
    """``tile`` is null or ``[h, w]`` in multiples of ``divisor``, with ``0 <= overlap < tile``."""
    if tile is None:
        return
    if len(tile) != 2 or any(int(t) < 1 or int(t) % divisor for t in tile):
        raise ConfigError(f"tile must be null (whole slices) or [h, w], multiples of {divisor}; got {list(tile)}")
    if len(overlap) != 2 or not all(0 <= int(o) < int(t) for o, t in zip(overlap, tile)):
        raise ConfigError(f"overlap must be [h, w] with 0 <= overlap < tile {list(tile)}; got {list(overlap)}")


def segment_volumes(predictor: TilePredictor, case: str, volumes: Mapping[str, Volume], meta: dict,
                    num_classes: int, clean: Sequence[int] = (), **inference) -> tuple[np.ndarray, Case]:
    """Predict one case read with :func:`.dataset.read_case_volumes`: ``(labels (X, Y, Z) on the input's own
    axes, the prepared Case)``; ``clean`` lists labels reduced to their largest component."""
    labels, _, prepared = segment_case(predictor, case, volumes, meta, num_classes, clean, **inference)
    return labels, prepared


def segment_case(predictor: TilePredictor, case: str, volumes: Mapping[str, Volume], meta: dict, num_classes: int,
                 clean: Sequence[int] = (), channels: int | None = None,
                 **inference) -> tuple[np.ndarray, np.ndarray | None, Case]:
    """:func:`segment_volumes` plus the border probability ``(X, Y, Z)`` on the input's own axes when the
    predictor returns ``channels = num_classes + 1`` (else None)."""
    prepared = prepare_inference_case(dict(volumes), meta, case)
    canonical, border = predict_maps(predictor, prepared, meta, num_classes, channels, progress=f"{case} (slices)",
                                     **inference)
    labels = prepared.to_original(canonical)
    labels = keep_largest_components(labels, clean) if clean else labels
    return labels, None if border is None else prepared.to_original(border), prepared


def warn_single_things(clean: Sequence[int], instancer: Instancer | None, meta: dict) -> None:
    """Warn when ``largest_component`` keeps one component of a thing class whose instances are asked for."""
    if instancer is None:
        return
    names = {v: k for k, v in meta["labels"].items()}
    single = [names[v] for v in clean if names.get(v) in {instancer.class_names[i] for i in instancer.thing_ids}]
    if single:
        log.warning("largest_component keeps one component of the thing class(es) %s: at most one instance each",
                    single)


def checked_settings(task: SegmentationTask, predictor: TilePredictor, mode: str, instancer: Instancer | None,
                     largest_component: bool | Sequence[str], tile, overlap) -> tuple[dict, list[int]]:
    """The checks predict and evaluate share before any work: the checkpoint's Dixon meta, the task mode, the
    clean-up values, tiling and TTA flips. Returns ``(meta, clean-up values)``."""
    meta = dixon_meta(task)
    check_mode(mode, instancer)
    clean = cleanup_values(largest_component, meta)
    warn_single_things(clean, instancer, meta)
    check_tile(tile, overlap, int(meta.get("size_divisor", 32)))
    check_tta_flips(predictor, meta)
    return meta, clean


def predict(task: SegmentationTask, predictor: TilePredictor, input, output: str, overwrite: bool = False,
            batch_size: int = 16, largest_component: bool | Sequence[str] = False, fat_fraction: bool = False,
            series: Mapping[str, str] | None = None, tile: Sequence[int] | None = None,
            overlap: Sequence[int] = (0, 0), blend: str = "gaussian", mode: str = "semantic",
            instancer: Instancer | None = None) -> list[Path]:
    """Predict every case of ``input`` into ``output`` (see the module docstring); returns the files written.

    Args:
        batch_size: slices (tiles) per forward pass.
        largest_component: keep only the largest connected component of every foreground label (``true``)
            or of the named labels (e.g. ``[liver, spleen]``; not for labels with several parts, like kidneys).
        fat_fraction: also write ``OUT_fatfraction.nii.gz`` (needs water and fat images).
        series: channel name -> DICOM SeriesInstanceUID or SeriesDescription, for DICOM folders.
        tile, overlap, blend: ``null`` = whole slices; else windows inside slices (multiples of the size divisor).
        mode: ``semantic``, ``instance`` or ``panoptic`` (the extra outputs of the module docstring).
        instancer: cuts the instances (instance and panoptic); the predictor returns
            :func:`core.predict.output_channels` channels (the border logit last when the model has one).
    """
    meta, clean = checked_settings(task, predictor, mode, instancer, largest_component, tile, overlap)
    jobs = plan(input, output, meta, fat_fraction, series, mode)
    for path in (p for job in jobs for p in job.outputs):
        check_writable(path, overwrite)
    inference = dict(batch_size=batch_size, tile=tile, overlap=overlap, blend=blend,
                     channels=output_channels(task, instancer))
    with ExitStack() as staged:
        def stage(path: Path) -> Path:
            return staged.enter_context(atomic_path(path, overwrite))

        for job in jobs:
            volumes = read_case_volumes(job.files, job.case, series)
            labels, border, case = segment_case(predictor, job.case, volumes, meta, task.hparams.num_classes, clean,
                                                **inference)
            write_label(stage(job.output), labels, case.reference, True)
            if job.fat_fraction is not None:
                ff = fat_fraction_map(volumes["water"].array, volumes["fat"].array)
                write_nifti(stage(job.fat_fraction), ff, case.reference, True)
            if instancer is not None:
                water, fat = (volumes[n].array if n in volumes else None for n in ("water", "fat"))
                write_instance_outputs(stage, job.instances, job.case, labels, instancer(labels, border), instancer,
                                       case.reference, meta["labels"], water, fat)
    written = [p for job in jobs for p in job.outputs]
    log.info("wrote %s", ", ".join(map(str, written)))
    return written
