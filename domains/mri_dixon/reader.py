"""Reading Dixon cases for predict and evaluate: the user's ``input`` as cases, each case as 2D slice sources.

How the channels of a case are given (``input=``); the model's channels are its checkpoint's ``channels`` (e.g.
water, fat, in_phase, out_phase), plus ``water`` and ``fat`` when it takes the fat-fraction channel or the reader
is asked for them (``water_fat``: an FF map is written):

* an nnU-Net images folder or case folder: ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``... (the 4-digit index is the
  channel's index in the training ``dataset.json``; ``.nii``, ``.mha``, ``.mhd``, ``.nrrd`` also do). A folder
  holding several cases predicts them all (``output`` is then a folder, ``FOLDER/CASE.nii.gz`` per case);
* a case folder with one entry per channel named after it: ``water/``, ``fat/``... (DICOM series folders) or
  ``water.nii.gz``, ``fat.mha``...;
* one DICOM folder holding a series per channel, chosen with ``series={water: <SeriesInstanceUID or
  SeriesDescription>, fat: ...}`` (a single-channel model needs no ``series`` if the folder holds one series);
* a list (``input='[a_0000.nii.gz,a_0001.nii.gz]'``) or a glob (``input='case/a_000?.nii.gz'``) of files named as
  in nnU-Net, or of any files/DICOM folders given in the model's channel order;
* a mapping ``input='{water: w.nii.gz, fat: dicom/fat}'``.

A case is read, brought to RAS+, normalised as in training (:func:`.dataset.prepare_inference_case`) and resampled
to the model's training spacing. For a 2D (2.5D) model each slice along the checkpoint's ``axis`` (with its 2.5D
neighbours), zero-padded to a multiple of ``size_divisor``, is one engine source, so with ``tile=null`` every slice is
one window and slices are batched together. For a 3D model (``spatial_dims`` 3, ``model=unet3d``) the whole volume
``(X, Y, Z)`` is one source tiled by 3D windows: by default the training patch with half a patch of overlap (nnU-Net's
step 0.5), blended with Gaussian weights. ``restore`` crops the padding, stacks the slices back (2D), brings the
probabilities back to the input's grid and returns the logits on the input's own array axes.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.contracts import DataMeta, Item, Job
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.inference import ArraySource, InferenceOptions, TilePredictor, Window
from segsuite.core.io import pattern_matches

from .cases import Case, inference_channels, prepare_inference_case, read_case_volumes
from .fatfraction import fat_fraction_map
from .io import (
    NIFTI_SUFFIXES,
    SITK_SUFFIXES,
    Volume,
    check_same_grid,
    from_canonical_ornt,
    list_dicom_series,
    pick_series,
    read_grid,
    read_volume,
    voxel_spacing,
    write_nifti,
)
from .resample import needs_resampling, probabilities_back, resampled_affine, to_target

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
    check_tta_flips(job.model.predictor, meta)
    return meta


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


def slice_stack(image: np.ndarray, axis: int, divisor: int, tile: Sequence[int] | None = None) -> np.ndarray:
    """Every slice of ``image`` ``(C, X, Y, Z)`` along ``axis``, contiguous ``(N, C, H', W')``: zero-padded at the end
    of both in-plane axes to a multiple of ``divisor`` (and at least ``tile``), as validation slices in training."""
    stack = torch.from_numpy(image).movedim(axis + 1, 0)  # (N, C, H, W), a strided view
    n, c, h, w = stack.shape
    target = (h, w) if tile is None else (max(h, int(tile[0])), max(w, int(tile[1])))
    padded = torch.zeros((n, c, *(math.ceil(t / divisor) * divisor for t in target)), dtype=torch.float32)
    padded[:, :, :h, :w] = stack
    return padded.numpy()


def channels_innermost(logits: torch.Tensor) -> torch.Tensor:
    """``(C, X, Y, Z)`` (any strides) as a ``(C, X, Y, Z)`` view of an ``(X, Y, Z, C)`` tensor: the argmax over the
    channels that follows (``logits.max(0)``) then reduces over adjacent values, 4-7 times faster on the CPU than over
    the outermost axis of a contiguous or permuted volume (0.2 s instead of 0.8-1.4 s for 7 x 256 x 256 x 64)."""
    if logits.dim() < 2 or logits.stride(0) == 1:
        return logits
    out = torch.empty((*logits.shape[1:], logits.shape[0]), dtype=logits.dtype, device=logits.device)
    out = out.movedim(-1, 0)
    out.copy_(logits)
    return out


@dataclass
class OpenedCase:
    """A case ready for the engine: its slices as sources, the volumes as read (original grid) and the prepared case
    (``case.reference``: the grid every output is written on)."""

    sources: list[SliceSource]
    volumes: dict[str, Volume]
    case: Case
    axis: int
    grid: tuple[int, int, int] | None = None  # the canonical shape of the case as read, if it was resampled
    num_classes: int = 0
    streaming: bool = False
    options: InferenceOptions | None = None  # how the engine tiles this case, when not the job's (3D: the patch)
    volumetric: bool = False  # one 3D source (X, Y, Z) instead of slices

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        """``(C, N, H', W')`` slice logits (a 3D model: ``(C, X', Y', Z')``) -> ``(C, X, Y, Z)`` on the input's own
        grid and array axes: padding cropped, slices stacked, probabilities brought back from the training spacing,
        orientation undone."""
        if self.volumetric:
            canonical = logits  # (C, X', Y', Z') in RAS+ already
        else:
            plane = np.delete(self.case.image.shape[1:], self.axis)
            canonical = logits[:, :, : plane[0], : plane[1]].movedim(1, self.axis + 1)  # (C, X', Y', Z') in RAS+
        canonical = self._back(canonical)
        ornt = from_canonical_ornt(self.case.reference.affine)  # applied as nibabel's apply_orientation does
        flipped = [axis + 1 for axis, flip in enumerate(ornt[:, 1]) if flip == -1]
        oriented = canonical.flip(flipped) if flipped else canonical
        return channels_innermost(oriented.permute(0, *(int(a) + 1 for a in np.argsort(ornt[:, 0]))))

    def _back(self, logits: torch.Tensor) -> torch.Tensor:
        """From the resampled grid to the case's own: class probabilities interpolated linearly (as nnU-Net does; the
        argmax is then taken on the input's grid), returned as log-probabilities so their softmax is exactly them;
        a border logit is interpolated as it is."""
        if self.grid is None or tuple(logits.shape[1:]) == self.grid:
            return logits
        k = self.num_classes
        back = probabilities_back(torch.cat([logits[:k].softmax(0), logits[k:]]), self.grid)
        back[:k].clamp_min_(1e-12).log_()  # in place: the probabilities are not needed again
        return back

    def close(self) -> None:
        pass

    def cell_size(self) -> tuple[float, str]:
        """One voxel's volume in mL (``segsuite.core.api``)."""
        return abs(float(np.linalg.det(self.case.reference.affine[:3, :3]))) / 1000.0, "mL"

    def values(self) -> dict[str, np.ndarray]:
        """The fat fraction on the input's grid when water and fat were read (NaN where the signal is too low)."""
        if "water" not in self.volumes or "fat" not in self.volumes:
            return {}
        ff, valid = fat_fraction_map(self.volumes["water"].array, self.volumes["fat"].array)
        return {"fat_fraction": np.where(valid, ff, np.nan)}


@dataclass
class DixonReader:
    """Cases of Dixon volumes (module docstring). ``series``: channel -> DICOM SeriesInstanceUID or
    SeriesDescription; ``water_fat``: also read water and fat (for an FF map or the instances' mean FF)."""

    series: Mapping[str, str] | None = None
    water_fat: bool = False

    def find(self, input: Any, job: Job) -> list[Item]:
        meta = check_checkpoint(job)
        names = inference_channels(meta, with_water_fat=self.water_fat)
        unknown = sorted(set(self.series or {}) - set(names))
        if unknown:
            raise ConfigError(f"domain.reader.series names channels {unknown} that are not read; channels: {names}")
        cases = collect_cases(input, meta, names, dict(self.series or {}))
        return [Item(case, files, Path(case) if len(cases) > 1 else Path()) for case, files in cases.items()]

    def check(self, item: Item, job: Job) -> None:
        """The checkpoint (evaluate finds no inputs); every file's header readable, one grid; DICOM folders: their
        series selection."""
        check_checkpoint(job)
        grids = {}
        for name, path in item.source.items():
            if Path(path).is_dir():
                pick_series(list_dicom_series(path), (self.series or {}).get(name), Path(path))
            else:
                grids[name] = read_grid(path, item.name)
        if len(grids) > 1:
            check_same_grid(grids, item.name)

    def open(self, item: Item, job: Job) -> OpenedCase:
        """Every channel of ``item`` read (evaluate adds water and fat for the mean FF) and the model's prepared."""
        volumes = _read_volumes(dict(item.source), item.name, dict(self.series or {}))
        return _opened_case(volumes, item.name, job)

    def from_array(self, array: np.ndarray, job: Job) -> OpenedCase:
        """An in-memory case ``(C, D, H, W)`` (``segsuite.core.api``): the checkpoint's channels in its order, taken as
        RAS+ at the model's training spacing (1 mm without one; so it is not resampled), normalised per case as a file
        is."""
        names = inference_channels(check_checkpoint(job))
        if array.ndim != 4 or array.shape[0] != len(names):
            raise DataError(f"an array of shape {tuple(array.shape)}: expected (C, D, H, W) with C={len(names)}, "
                            f"the channels {', '.join(names)} in this order")
        affine = np.diag([*(job.model.meta.get("target_spacing") or (1.0, 1.0, 1.0)), 1.0])
        volumes = {n: Volume(np.asarray(array[i], np.float32), affine) for i, n in enumerate(names)}
        return _opened_case(volumes, "array", job)

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """A small phantom case (its channel files, nnU-Net names) written into ``folder`` once (demo page)."""
        from .phantom import CHANNELS, make_case

        case = folder / "phantom_example"
        if not case.is_dir():
            channels, label, affine, _ = make_case((48, 48, 16), (2.0, 2.0, 4.0), seed=3)
            case.mkdir(parents=True)
            for index, name in enumerate(CHANNELS):
                write_nifti(case / f"phantom_example_{index:04d}.nii.gz", channels[name], Volume(label, affine))
        return [case]


def _read_volumes(files: dict[str, Path], case: str, series: dict[str, str]) -> dict[str, Volume]:
    """:func:`.cases.read_case_volumes` with the channels read side by side, one thread each (gzip inflates
    without the GIL: four 256 x 256 x 64 channels read in about half the time on 2 cores)."""
    if len(files) < 2:
        return read_case_volumes(files, case, series)
    with ThreadPoolExecutor(len(files), thread_name_prefix="dixon-read") as pool:
        futures = {name: pool.submit(read_volume, path, case=case, series=series.get(name))
                   for name, path in files.items()}
        volumes = {name: future.result() for name, future in futures.items()}
    check_same_grid(volumes, case)
    return volumes


def _opened_case(volumes: dict[str, Volume], name: str, job: Job) -> OpenedCase:
    """A case's volumes normalised as in training and cut into slice sources along the checkpoint's axis."""
    meta = job.model.meta
    case = prepare_inference_case(volumes, meta, name)
    grid = tuple(int(n) for n in case.image.shape[1:])
    if meta.get("resample") and meta.get("target_spacing"):  # the model saw its training spacing
        case = _resample(case, list(meta["target_spacing"]), job.model.predictor.device)
    axis, tile = int(meta["axis"]), job.options.tile if job.options else None
    if is_volumetric(meta):
        options = volume_options(job.options, meta)
        return OpenedCase([ArraySource(case.image)], volumes, case, axis, grid, job.model.num_classes,
                          options=options, volumetric=True)
    stack = slice_stack(case.image, axis, int(meta.get("size_divisor", 32)), tile)
    sources = [SliceSource(stack, i, int(meta["context_slices"])) for i in range(len(stack))]
    return OpenedCase(sources, volumes, case, axis, grid, job.model.num_classes)


def _resample(case: Case, target: list[float], device: torch.device) -> Case:
    """:func:`.dataset.resample_case` for an unlabelled case, the image resampled on the predictor's ``device``
    (:func:`.resample.to_target`: scipy's cubic spline as separable matrix products)."""
    spacing = voxel_spacing(case.affine)
    if not needs_resampling(spacing, target):
        return case
    image, _ = to_target(case.image, spacing, target, device=device)
    affine = resampled_affine(case.affine, case.image.shape[1:], image.shape[1:])
    return Case(case.name, image, None, affine, case.reference, case.normalization)


def volume_options(options: InferenceOptions | None, meta: DataMeta | dict) -> InferenceOptions:
    """How a 3D model tiles a volume: ``domain.inference`` where it gives 3D values, else the training patch with
    half a patch of overlap (nnU-Net's step 0.5). The batch is capped at the plan's, which was budgeted for the GPU's
    memory in training (inference needs less, so it never runs out where training did not)."""
    options = options or InferenceOptions(None, (0, 0), 1)
    patch = tuple(int(p) for p in meta["patch_size"])
    tile = options.tile or patch
    half = tuple(p // 2 for p in patch)
    overlap = options.overlap if options.tile is not None or len(options.overlap) == 3 else half
    batch = min(options.batch_size, int(meta.get("batch_size") or options.batch_size))
    return InferenceOptions(tile, overlap, batch, options.blend)
