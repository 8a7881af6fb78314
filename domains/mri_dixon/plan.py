"""A training plan derived from the data, after nnU-Net's dataset fingerprint -> experiment plan.

**Fingerprint** (training cases, canonical RAS+ orientation): voxel spacing and shape of every case, foreground
intensity statistics per channel (up to :data:`FOREGROUND_SAMPLES` voxels with a label > 0 drawn per case, seeded)
and voxel counts per label. Cases are not cropped to their non-zero region first (nnU-Net does).

**Plan** (see :func:`make_plan`):

* target spacing: the median spacing per axis; when one axis is much coarser (more than
  :data:`ANISOTROPY_RATIO` times the next coarsest spacing) *and* has far fewer voxels (its median voxel count
  times the ratio is below the others'), that axis takes the 10th percentile of its spacings instead (not finer
  than the other axes), so thick-slice outliers are not interpolated from a few slices (nnU-Net's rule);
* median shape: the median of every case's shape once resampled to the target spacing;
* patch sizes: start from the median shape (3D) or its in-plane part (2D, slices perpendicular to ``axis``),
  rounded up to a multiple of the network's divisor (3D: ``2 ** pools`` per axis from
  :func:`segsuite.core.models.topology`; 2D: 32, the stride of the 2D networks); while the patch holds more than half
  the batch budget, shrink the axis that is largest relative to the median shape by one divisor step;
* batch size (:func:`segsuite.core.plan.batch_size`): the batch budget over the patch's voxels, at most what covers
  5 % of all training voxels, at least 2. Budgets are nnU-Net's 8 GB reference configurations, scaled by
  ``memory_gb``: 2 x 128^3 voxels (3D) and 12 x 512^2 pixels (2D) per batch;
* run length, validation interval and early-stopping patience: the core's step budget
  (:func:`segsuite.core.plan.budget`) for the chosen patch and batch over all training voxels; class frequencies
  and weights from the label voxel counts (:func:`segsuite.core.plan.class_weights`);
* normalisation per channel: ``ct`` for channels named CT (clip to the foreground 0.5/99.5 percentiles of the
  whole training set, z-score with its foreground mean and std), otherwise the per-case scheme (each case's own
  percentiles and z-score);
* ``in_channels``, ``num_classes`` and class names from dataset.json and the channel selection.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segsuite.core import plan as planning
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.io import write_json
from segsuite.core.models import topology

from .resample import target_shape

FOREGROUND_SAMPLES = 10_000
ANISOTROPY_RATIO = 3.0
MIN_BATCH = 2
MAX_DATASET_FRACTION = planning.MAX_DATA_FRACTION  # the core's rule (segsuite.core.plan)
BATCH_VOXELS = {3: 2 * 128**3, 2: 12 * 512**2}  # per batch at the 8 GB reference
REFERENCE_GB = 8.0
DIVISOR_2D = 32
PER_CASE = "per_case_percentile_zscore"
CT = "ct"


@dataclass
class CaseFingerprint:
    """One training case: spacing (mm) and shape on the canonical grid, sampled foreground intensities per
    channel name and voxel counts per label value."""

    spacing: list[float]
    shape: list[int]
    foreground: dict[str, np.ndarray]
    label_voxels: list[int]


def case_fingerprint(
    raw: dict[str, np.ndarray], label: np.ndarray, spacing, num_classes: int, seed: int = 1234
) -> CaseFingerprint:
    """Fingerprint of one case: ``raw`` maps channel names to canonical ``(X, Y, Z)`` intensities, ``label`` is
    the canonical label volume (values >= ``num_classes``, e.g. the ignore index, are not foreground)."""
    foreground = (label > 0) & (label < num_classes)
    rng = np.random.default_rng(seed)
    samples = {}
    for name, array in raw.items():
        values = array[foreground]
        count = min(len(values), FOREGROUND_SAMPLES)
        samples[name] = rng.choice(values, count, replace=False) if count else values
    counts = np.bincount(label[label < num_classes].ravel().astype(np.int64), minlength=num_classes)
    return CaseFingerprint([float(s) for s in spacing], [int(n) for n in label.shape], samples, counts.tolist())


def intensity_statistics(values: np.ndarray) -> dict[str, float]:
    """nnU-Net's foreground intensity properties of one channel (all None without foreground)."""
    if not len(values):
        return dict.fromkeys(("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5"))
    low, median, high = np.percentile(values, (0.5, 50.0, 99.5))
    return {"mean": float(values.mean()), "median": float(median), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()), "percentile_00_5": float(low),
            "percentile_99_5": float(high)}


@dataclass
class Plan:
    """Everything the data decide about training; JSON-able (:meth:`to_dict` / :meth:`from_dict`)."""

    n_cases: int
    channels: list[str]
    input_channels: list[str]
    class_names: list[str]
    num_classes: int
    in_channels: int
    spatial_dims: int
    axis: int
    context_slices: int
    spacings: list[list[float]]
    shapes: list[list[int]]
    median_spacing: list[float]
    target_spacing: list[float]
    anisotropic_axis: int | None
    median_shape: list[int]
    patch_size_2d: list[int]
    batch_size_2d: int
    patch_size_3d: list[int]
    batch_size_3d: int
    kernels_3d: list[list[int]]
    strides_3d: list[list[int]]
    normalization: dict[str, dict] = field(default_factory=dict)
    label_voxels: dict[str, int] = field(default_factory=dict)
    memory_gb: float = REFERENCE_GB
    class_weights: list[float] = field(default_factory=list)
    budget: dict = field(default_factory=dict)  # the chosen spatial_dims' run length (segsuite.core.plan.budget)

    @property
    def patch_size(self) -> list[int]:
        """The patch of the chosen ``spatial_dims``."""
        return self.patch_size_3d if self.spatial_dims == 3 else self.patch_size_2d

    @property
    def batch_size(self) -> int:
        return self.batch_size_3d if self.spatial_dims == 3 else self.batch_size_2d

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, content: dict) -> Plan:
        return cls(**content)

    def write(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | os.PathLike) -> Plan:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise DataError(f"cannot read plan {str(path)!r}: {err}") from err

    def summary(self) -> str:
        """A few lines for the log."""
        mm = " x ".join(f"{s:.2f}" for s in self.target_spacing)
        median = " x ".join(f"{s:.2f}" for s in self.median_spacing)
        total = max(1, sum(self.label_voxels.values()))
        classes = ", ".join(f"{n} {100 * v / total:.1f}%" for n, v in self.label_voxels.items())
        by_scheme: dict[str, list[str]] = {}
        for name, value in self.normalization.items():
            by_scheme.setdefault(value["scheme"], []).append(name)
        schemes = "; ".join(f"{scheme} ({', '.join(names)})" for scheme, names in by_scheme.items())
        return (
            f"plan from {self.n_cases} training cases: target spacing {mm} mm (median {median}"
            f"{'' if self.anisotropic_axis is None else f'; anisotropic axis {self.anisotropic_axis}'}), "
            f"median shape {_x(self.median_shape)}\n"
            f"  2D (slices along axis {self.axis}): patch {_x(self.patch_size_2d)}, batch {self.batch_size_2d}; "
            f"3D: patch {_x(self.patch_size_3d)}, batch {self.batch_size_3d}, strides {self.strides_3d[1:]}\n"
            f"  training {self.spatial_dims}D, in_channels {self.in_channels} ({', '.join(self.input_channels)}), "
            f"{self.num_classes} classes ({classes})\n  normalisation: {schemes}"
            + (f"\n  budget {self.budget['max_steps']} steps, validation every {self.budget['val_check_interval']}"
               if self.budget else "")
        )


def _x(values) -> str:
    return " x ".join(str(v) for v in values)


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Median spacing, with nnU-Net's anisotropy rule (module docstring); also the anisotropic axis or None."""
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    coarse = target[worst] > ANISOTROPY_RATIO * max(target[a] for a in others)
    few = median_shape[worst] * ANISOTROPY_RATIO < min(median_shape[a] for a in others)
    if not (coarse and few):
        return target, None
    tenth = float(np.percentile(spacings[:, worst], 10))
    finest_other = max(target[a] for a in others)
    target[worst] = tenth if tenth >= finest_other else finest_other + 1e-5
    return target, worst


def _fit_patch(median: list[float], max_voxels: float, layout) -> tuple[list[int], list[int]]:
    """Largest patch (from ``median``, rounded up by ``layout``) within ``max_voxels``: shrink the axis largest
    relative to the median by one divisor step at a time. ``layout(patch) -> (rounded patch, divisor)``."""
    patch, divisor = layout([max(1, math.ceil(m)) for m in median])
    while math.prod(patch) > max_voxels:
        order = np.argsort([-p / m for p, m in zip(patch, median)], kind="stable")
        axis = next((int(a) for a in order if patch[a] > divisor[a]), None)
        if axis is None:
            break
        smaller = list(patch)
        smaller[axis] -= divisor[axis]
        patch, divisor = layout(smaller)
    return patch, divisor


def _layout_3d(spacing):
    def layout(patch):
        shape = topology(spacing, patch)
        return shape.patch_size, shape.divisor

    return layout


def _layout_2d(patch):
    return [-(-p // DIVISOR_2D) * DIVISOR_2D for p in patch], [DIVISOR_2D] * len(patch)


def _batch_size(patch: list[int], dims: int, memory_gb: float, dataset_voxels: float) -> int:
    """The core's batch rule with nnU-Net's ``dims``-D budget, at least :data:`MIN_BATCH`."""
    return planning.batch_size(patch, dataset_voxels, memory_gb, MIN_BATCH, BATCH_VOXELS[dims])


def normalization_schemes(fingerprints: list[CaseFingerprint], names: list[str]) -> dict[str, dict]:
    """Per channel: the scheme (``ct`` for channels named CT, else per case) and foreground statistics."""
    out = {}
    for name in names:
        values = np.concatenate([fp.foreground[name] for fp in fingerprints if name in fp.foreground] or [[]])
        scheme = CT if name.strip().lower() == "ct" else PER_CASE
        out[name] = {"scheme": scheme, **intensity_statistics(np.asarray(values, dtype=np.float64))}
    return out


def make_plan(
    fingerprints: list[CaseFingerprint],
    channels: list[str],
    input_channels: list[str],
    class_names: list[str],
    axis: int = 2,
    context_slices: int = 0,
    spatial_dims: int = 2,
    memory_gb: float = REFERENCE_GB,
    override_spacing: list[float] | None = None,
) -> Plan:
    """The plan for training cases' ``fingerprints`` (module docstring). ``channels``: the dataset channels read
    (normalised); ``input_channels``: what the network sees (plus e.g. the FF channel); ``override_spacing``: a
    target spacing (mm) chosen by the user instead of the rule."""
    if not fingerprints:
        raise DataError("no training cases to plan from")
    if memory_gb <= 0:
        raise ConfigError(f"memory_gb must be > 0, got {memory_gb}")
    spacings = np.array([fp.spacing for fp in fingerprints], dtype=np.float64)
    shapes = np.array([fp.shape for fp in fingerprints], dtype=np.float64)
    median_spacing = np.percentile(spacings, 50, axis=0)
    target, anisotropic = target_spacing(spacings, shapes)
    if override_spacing is not None:
        target, anisotropic = np.asarray(override_spacing, dtype=np.float64), None
    resampled = np.array([target_shape(fp.shape, fp.spacing, target) for fp in fingerprints], dtype=np.float64)
    median_shape = np.percentile(resampled, 50, axis=0)
    dataset_voxels = float(np.prod(median_shape)) * len(fingerprints)
    scale = memory_gb / REFERENCE_GB
    patch_3d, _ = _fit_patch(list(median_shape), BATCH_VOXELS[3] * scale / MIN_BATCH, _layout_3d(target))
    plane = [float(m) for a, m in enumerate(median_shape) if a != axis]
    patch_2d, _ = _fit_patch(plane, BATCH_VOXELS[2] * scale / MIN_BATCH, _layout_2d)
    net = topology(target, patch_3d)
    label_voxels = np.sum([fp.label_voxels for fp in fingerprints], axis=0)
    in_channels = len(input_channels) * (1 if spatial_dims == 3 else 2 * context_slices + 1)
    batch_2d = _batch_size(patch_2d, 2, memory_gb, dataset_voxels)
    batch_3d = _batch_size(patch_3d, 3, memory_gb, dataset_voxels)
    chosen = (patch_3d, batch_3d) if spatial_dims == 3 else (patch_2d, batch_2d)
    return Plan(
        n_cases=len(fingerprints),
        channels=list(channels),
        input_channels=list(input_channels),
        class_names=list(class_names),
        num_classes=len(class_names),
        in_channels=in_channels,
        spatial_dims=int(spatial_dims),
        axis=int(axis),
        context_slices=int(context_slices),
        spacings=spacings.tolist(),
        shapes=shapes.astype(int).tolist(),
        median_spacing=median_spacing.tolist(),
        target_spacing=[float(t) for t in target],
        anisotropic_axis=anisotropic,
        median_shape=[int(round(m)) for m in median_shape],
        patch_size_2d=[int(p) for p in patch_2d],
        batch_size_2d=batch_2d,
        patch_size_3d=[int(p) for p in patch_3d],
        batch_size_3d=batch_3d,
        kernels_3d=net.kernels,
        strides_3d=net.strides,
        normalization=normalization_schemes(fingerprints, list(channels)),
        label_voxels={name: int(v) for name, v in zip(class_names, label_voxels)},
        memory_gb=float(memory_gb),
        class_weights=planning.class_weights(label_voxels.tolist()),
        budget=planning.budget(dataset_voxels, *chosen),
    )
