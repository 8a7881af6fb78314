"""A training plan derived from the data, after nnU-Net's dataset fingerprint -> experiment plan.

**Fingerprint** (training cases, canonical RAS+ orientation): voxel spacing and shape of every case, foreground
intensities per channel (:func:`segsuite.core.plan3d.foreground_sample`) and voxel counts per label. Cases are not
cropped to their non-zero region first (nnU-Net does).

**Plan** (see :func:`make_plan`):

* target spacing, 2D and 3D patch and batch sizes: the core's volume rules (:mod:`segsuite.core.plan3d`: median
  spacing with nnU-Net's anisotropy rule; the median shape resampled to it, fitted to the memory budget);
* run length, validation interval and early-stopping patience: the core's step budget
  (:func:`segsuite.core.plan.budget`) for the chosen patch and batch over all training voxels; class frequencies
  and weights from the label voxel counts (:func:`segsuite.core.plan.class_weights`);
* normalisation per channel: ``ct`` for channels named CT (clip to the foreground 0.5/99.5 percentiles of the
  whole training set, z-score with its foreground mean and std), otherwise the per-case scheme (each case's own
  percentiles and z-score);
* ``in_channels``, ``num_classes`` and class names from dataset.json and the channel selection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from segsuite.core import plan as planning
from segsuite.core import plan3d
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.models import topology

from .resample import target_shape

REFERENCE_GB = planning.REFERENCE_GB
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
    samples = {name: plan3d.foreground_sample(array, foreground, rng) for name, array in raw.items()}
    counts = np.bincount(label[label < num_classes].ravel().astype(np.int64), minlength=num_classes)
    return CaseFingerprint([float(s) for s in spacing], [int(n) for n in label.shape], samples, counts.tolist())


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


def normalization_schemes(fingerprints: list[CaseFingerprint], names: list[str]) -> dict[str, dict]:
    """Per channel: the scheme (``ct`` for channels named CT, else per case) and foreground statistics."""
    out = {}
    for name in names:
        values = np.concatenate([fp.foreground[name] for fp in fingerprints if name in fp.foreground] or [[]])
        scheme = CT if name.strip().lower() == "ct" else PER_CASE
        out[name] = {"scheme": scheme, **plan3d.intensity_statistics(np.asarray(values, dtype=np.float64))}
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
    target, anisotropic = plan3d.target_spacing(spacings, shapes)
    if override_spacing is not None:
        target, anisotropic = np.asarray(override_spacing, dtype=np.float64), None
    resampled = np.array([target_shape(fp.shape, fp.spacing, target) for fp in fingerprints], dtype=np.float64)
    median_shape = np.percentile(resampled, 50, axis=0)
    dataset_voxels = float(np.prod(median_shape)) * len(fingerprints)
    fitted = plan3d.patches(median_shape, target, axis, memory_gb, dataset_voxels)
    (patch_2d, batch_2d), (patch_3d, batch_3d) = fitted[2], fitted[3]
    net = topology(target, patch_3d)
    label_voxels = np.sum([fp.label_voxels for fp in fingerprints], axis=0)
    in_channels = len(input_channels) * (1 if spatial_dims == 3 else 2 * context_slices + 1)
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
