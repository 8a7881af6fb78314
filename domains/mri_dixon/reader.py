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

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import torch

from segsuite.core.contracts import DataMeta, Item, Job
from segsuite.core.domain import BaseOpened, BaseReader
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.inference import ArraySource, InferenceOptions, Window
from segsuite.core.inference.slabs import Stack, restore_stack
from segsuite.core.preview import fit, stretch
from segsuite.core.zoom import zoom_torch

from .cases import Case, inference_channels, prepare_inference_case, read_case_volumes
from .fatfraction import fat_fraction_map
from .inputs import check_checkpoint, check_tta_flips, collect_cases, is_volumetric
from .io import (
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
from .resample import needs_resampling, resampled_affine, target_shape

log = logging.getLogger(__name__)

class SliceSource:
    """Slice ``index`` of a slice-major stack ``(N, C, H, W)`` (an array or :class:`SlicePlanes`) with its 2.5D
    neighbours, as a core ``Source``."""

    def __init__(self, stack: np.ndarray | SlicePlanes, index: int, context: int) -> None:
        self.stack, self.index, self.context = stack, index, context
        self.shape = tuple(int(n) for n in stack.shape[2:])  # (H, W)

    def read(self, window: Window) -> np.ndarray:
        """``(C * (2k + 1), h, w)`` float32, channel-major as :func:`.dataset.extract_slice`."""
        r, c, h, w = window
        if self.context == 0:
            return self.stack[self.index][:, r : r + h, c : c + w]
        k, last = self.context, self.stack.shape[0] - 1
        neighbours = np.clip(np.arange(self.index - k, self.index + k + 1), 0, last)  # edge slices replicated
        block = np.stack([self.stack[i][:, r : r + h, c : c + w] for i in neighbours])  # (2k + 1, C, h, w)
        return block.transpose(1, 0, 2, 3).reshape(-1, h, w)

    def skip(self, window: Window) -> bool:
        return False


class SlicePlanes:
    """The slices of ``image`` ``(C, X, Y, Z)`` along ``axis`` as a slice-major stack ``(N, C, H', W')``, each made
    when first read (in the engine's reader threads, while the network runs on earlier slices): resampled in-plane
    to ``size`` (cubic spline, :func:`segsuite.core.zoom.zoom_torch`) and zero-padded at the end of both axes to a
    multiple of ``divisor`` (and at least ``tile``), as validation slices in training."""

    def __init__(self, image: np.ndarray, axis: int, divisor: int, tile: Sequence[int] | None = None,
                 size: Sequence[int] | None = None) -> None:
        self.slices = torch.from_numpy(image).movedim(axis + 1, 0)  # (N, C, H, W), a strided view
        n, c, h, w = self.slices.shape
        self.size = tuple(int(s) for s in size or (h, w))
        target = self.size if tile is None else (max(self.size[0], int(tile[0])), max(self.size[1], int(tile[1])))
        self.shape = (n, c, *(math.ceil(t / divisor) * divisor for t in target))
        self.made: dict[int, np.ndarray] = {}

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self.made:  # two reader threads may both make it: the same values
            plane, x = np.zeros(self.shape[1:], np.float32), self.slices[i]
            if tuple(x.shape[1:]) != self.size:
                with torch.inference_mode():
                    x = zoom_torch(x.contiguous(), self.size)
            plane[:, : self.size[0], : self.size[1]] = x.numpy()
            self.made[i] = plane
        return self.made[i]


@dataclass
class OpenedCase(BaseOpened):
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
    shape: tuple[int, int, int] | None = None  # its canonical shape at the model's spacing, if not its image's

    @property
    def stack(self) -> Stack:
        """How the slices' logits (a 3D model: the volume's, along X) come back to the input's own grid and array
        axes (:mod:`segsuite.core.inference.slabs`): padding cropped, probabilities brought back from the training
        spacing, orientation undone."""
        image = self.shape or self.case.image.shape[1:]
        grid, axis = tuple(self.grid or image), 0 if self.volumetric else self.axis
        ornt = from_canonical_ornt(self.case.reference.affine)  # applied as nibabel's apply_orientation does
        flipped = [a + 1 for a, flip in enumerate(ornt[:, 1]) if flip == -1]
        order = (0, *(int(a) + 1 for a in np.argsort(ornt[:, 0])))

        def finish(logits: torch.Tensor) -> torch.Tensor:  # (C, N, H, W) -> (C, X, Y, Z) on the input's axes
            canonical = logits.movedim(1, axis + 1)
            return (canonical.flip(flipped) if flipped else canonical).permute(order)

        plane, shape = (tuple(int(n) for n in np.delete(g, axis)) for g in (image, grid))
        return Stack(int(image[axis]), plane, (int(grid[axis]), *shape), finish, "F")  # as NIfTI writes

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        """``(C, N, H', W')`` slice logits (a 3D model: ``(C, X', Y', Z')``) -> ``(C, X, Y, Z)`` on the input's own
        grid and array axes (:attr:`stack`, all slices at once)."""
        return restore_stack(self.stack, logits, self.num_classes)

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
class DixonReader(BaseReader):
    """Cases of Dixon volumes (module docstring). ``series``: channel -> DICOM SeriesInstanceUID or
    SeriesDescription; ``water_fat``: also read water and fat (for an FF map or the instances' mean FF)."""

    series: Mapping[str, str] | None = None
    water_fat: bool = False

    def prepare(self, job: Job) -> Job:
        """The job with the flips a Dixon model may use for TTA (:func:`.inputs.check_tta_flips`), on a copy of the
        predictor: the caller's is left as it is."""
        predictor = copy.copy(job.model.predictor)
        predictor.tta_flips = list(predictor.tta_flips)
        check_tta_flips(predictor, check_checkpoint(job))
        return replace(job, model=replace(job.model, predictor=predictor))

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

    def preview(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The demo page's picture of a volume: its first channel(s) stretched to RGB on the result's grid."""
        try:
            volume = np.asarray(nibabel.load(path).dataobj, dtype=np.float32)
        except Exception as err:  # a preview is a nicety: the prediction itself reports bad files
            log.info("no preview of %s: %s", path, err)
            return None
        return fit(stretch(volume[None] if volume.ndim == 3 else np.moveaxis(volume, -1, 0)), shape)

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
    meta, device = job.model.meta, job.model.predictor.device
    case = prepare_inference_case(volumes, meta, name)
    grid = shape = tuple(int(n) for n in case.image.shape[1:])
    axis, tile = int(meta["axis"]), job.options.tile if job.options else None
    volumetric = is_volumetric(meta)
    later = () if volumetric or device.type != "cpu" else tuple(a for a in range(3) if a != axis)
    if meta.get("resample") and meta.get("target_spacing"):  # the model saw its training spacing
        case, shape = _resample(case, list(meta["target_spacing"]), device, later)
    if volumetric:
        options = volume_options(job.options, meta)
        return OpenedCase([ArraySource(case.image)], volumes, case, axis, grid, job.model.num_classes,
                          options=options, volumetric=True)
    size = [n for a, n in enumerate(shape) if a != axis]
    stack = SlicePlanes(case.image, axis, int(meta.get("size_divisor", 32)), tile, size)
    sources = [SliceSource(stack, i, int(meta["context_slices"])) for i in range(stack.shape[0])]
    return OpenedCase(sources, volumes, case, axis, grid, job.model.num_classes, shape=shape)


def _resample(case: Case, target: list[float], device: torch.device, later: Sequence[int] = ()
              ) -> tuple[Case, tuple[int, ...]]:
    """:func:`.dataset.resample_case` for an unlabelled case, the image resampled on the predictor's ``device``
    (:func:`segsuite.core.zoom.zoom_torch`: scipy's cubic spline as separable matrix products), but for the axes
    ``later`` (a 2D model's slice plane on the CPU: :class:`SlicePlanes` resamples each slice as the engine reads it).
    Returns the case (its affine: the target grid's) and its shape at the target spacing."""
    spacing, shape = voxel_spacing(case.affine), case.image.shape[1:]
    if not needs_resampling(spacing, target):
        return case, shape
    new = target_shape(shape, spacing, target)
    now = [n if a in later else m for a, (n, m) in enumerate(zip(shape, new))]
    with torch.inference_mode():
        image = zoom_torch(torch.from_numpy(case.image).to(device), now).cpu().numpy()
    affine = resampled_affine(case.affine, shape, new)
    return Case(case.name, image, None, affine, case.reference, case.normalization), new


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
