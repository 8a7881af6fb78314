"""Synthetic abdominal Dixon phantom with known per-tissue water and fat content.

Geometry (in mm, relative to the volume centre, array axes before the affine): an elliptic body cylinder
along the third axis with a subcutaneous-fat rim, a muscle wall and two paraspinal muscles; inside the
cavity ellipsoidal liver, spleen and two kidneys (one label), blobs of visceral fat, and unlabelled soft
tissue elsewhere. Each tissue has a proton density ``pd`` and fat fraction ``ff``: ``W = pd (1 - ff)``,
``F = pd ff``, both times a smooth multiplicative bias field (coil sensitivity, which leaves FF
unchanged); in-phase ``= W + F``, out-phase ``= |W - F|``; then Rician noise on each of the four images
(standard deviation ``noise`` times the largest proton density).

The affine is oblique, anisotropic and LPS-like (first two array axes point to patient left and
posterior), with an origin offset, and is rounded to float32 so that it survives a NIfTI round trip
exactly. Everything is deterministic given the seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff
from scipy.ndimage import gaussian_filter, map_coordinates

from segsuite.core.errors import DataError
from segsuite.core.io import write_json

from .io import Volume, write_label, write_nifti

CHANNELS = ("water", "fat", "in_phase", "out_phase")
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidneys": 3, "muscle": 4, "subcutaneous_fat": 5, "visceral_fat": 6}
# tissue -> (proton density, fat fraction); "soft_tissue" is unlabelled (label 0) cavity content.
TISSUES = {"soft_tissue": (60.0, 0.05), "liver": (100.0, 0.12), "spleen": (90.0, 0.02), "kidneys": (95.0, 0.02),
           "muscle": (80.0, 0.03), "subcutaneous_fat": (100.0, 0.90), "visceral_fat": (100.0, 0.90)}
CASE_PREFIX = "phantom"
TRUTH_FILE = "phantom_truth.json"


def _grid_mm(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm relative to the volume centre, three ``(X, Y, Z)`` arrays."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def _ellipsoid(coords: list[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii)) <= 1.0


def _jitter(rng: np.random.Generator, scale: float, n: int = 3) -> np.ndarray:
    """Random factors in ``[1 - scale, 1 + scale]``, ``(n,)``."""
    return 1 + scale * rng.uniform(-1, 1, n)


def _tissue_map(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    grid: tuple[tuple[int, int, int], tuple[float, float, float]] | None = None,
) -> np.ndarray:
    """Tissue per voxel as an index into ``list(TISSUES)`` (-1 = air), ``(X, Y, Z)`` int8.

    The anatomy is laid out on the ``shape`` x ``spacing`` grid (its field of view and random field); ``grid``
    ``(shape, spacing)`` renders the same anatomy on another grid over the same field of view."""
    out_shape, out_spacing = grid or (shape, spacing)
    x, y, _ = coords = _grid_mm(out_shape, out_spacing)
    half = np.array(shape) * np.array(spacing) / 2
    body = np.array([half[0] * 0.9, half[1] * 0.75]) * _jitter(rng, 0.05, 2)  # semi-axes in mm
    rim, wall = 0.16 * body[0], 0.08 * body[0]  # subcutaneous fat and muscle wall thickness
    names = list(TISSUES)
    tissue = np.full(out_shape, -1, dtype=np.int8)
    for name, inset in (("subcutaneous_fat", 0.0), ("muscle", rim), ("soft_tissue", rim + wall)):
        tissue[(x / (body[0] - inset)) ** 2 + (y / (body[1] - inset)) ** 2 <= 1.0] = names.index(name)
    cavity = tissue == names.index("soft_tissue")
    smooth = gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    threshold = 0.5 * smooth.std()
    if grid is not None:  # the field at the other grid's voxel centres (linear), in the anatomy grid's indices
        smooth = map_coordinates(smooth, [c / s + (n - 1) / 2 for c, s, n in zip(coords, spacing, shape)],
                                 order=1, mode="nearest")
    tissue[cavity & (smooth > threshold)] = names.index("visceral_fat")
    # (tissue, centre and radii as fractions of the cavity semi-axes and half height); the array axes
    # point to patient left, posterior and superior (see phantom_affine).
    organs = [
        ("muscle", (-0.3, 0.85, 0.0), (0.2, 0.25, 1.2)),
        ("muscle", (0.3, 0.85, 0.0), (0.2, 0.25, 1.2)),
        ("liver", (-0.35, -0.15, 0.15), (0.5, 0.6, 0.55)),
        ("spleen", (0.55, 0.05, 0.25), (0.25, 0.35, 0.35)),
        ("kidneys", (-0.45, 0.5, -0.35), (0.17, 0.22, 0.4)),
        ("kidneys", (0.45, 0.5, -0.35), (0.17, 0.22, 0.4)),
    ]
    scale = np.array([body[0] - rim - wall, body[1] - rim - wall, half[2]])
    for name, centre, radii in organs:
        centre = (np.array(centre) + 0.04 * rng.uniform(-1, 1, 3)) * scale
        tissue[_ellipsoid(coords, centre, np.array(radii) * scale * _jitter(rng, 0.08)) & cavity] = names.index(name)
    return tissue


def _bias_field(shape: tuple[int, int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth positive multiplicative field, a random low-order polynomial in [-1, 1]^3, ``(X, Y, Z)``."""
    u, v, w = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    c = rng.uniform(-1, 1, 6)
    poly = (c[0] * u + c[1] * v + c[2] * w + c[3] * u * v + c[4] * u**2 + c[5] * v**2) / 3
    return np.exp(strength * poly)


def _rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise."""
    real = signal + rng.normal(0, sigma, signal.shape)
    imag = rng.normal(0, sigma, signal.shape)
    return np.hypot(real, imag).astype(np.float32)


def phantom_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                   rotation_deg: tuple[float, float] = (5.0, 12.0),
                   centre_mm: tuple[float, float, float] = (10.0, -20.0, 35.0)) -> np.ndarray:
    """Oblique (rotations about x then z), LPS-like, anisotropic 4x4 affine; float32-exact values."""
    ax, az = np.deg2rad(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    linear = rz @ rx @ np.diag([-1.0, -1.0, 1.0]) @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.array(centre_mm) - linear @ ((np.array(shape) - 1) / 2)
    return affine.astype(np.float32).astype(np.float64)


def grid_shape(shape, spacing, voxel_spacing) -> tuple[int, int, int]:
    """Voxels per axis covering the field of view ``shape x spacing`` at ``voxel_spacing`` (mm)."""
    return tuple(max(1, int(round(n * s / v))) for n, s, v in zip(shape, spacing, voxel_spacing))


def make_case(
    shape: tuple[int, int, int] = (64, 64, 24),
    spacing: tuple[float, float, float] = (1.5, 1.5, 3.0),
    seed: int = 0,
    liver_ff: float = 0.12,
    noise: float = 0.01,
    bias: float = 0.2,
    voxel_spacing: tuple[float, float, float] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, float]]:
    """One phantom case.

    ``shape`` x ``spacing`` lays out the anatomy; ``voxel_spacing`` renders the same anatomy (same seed, same
    organs in the same place in mm) on a grid of that spacing over the same field of view.

    Returns ``(channels, label, affine, true_ff)``: ``channels`` maps each of :data:`CHANNELS` to a float32
    ``(X, Y, Z)`` image, ``label`` is uint8 ``(X, Y, Z)`` with values from :data:`LABELS`, ``affine`` the 4x4
    voxel-to-RAS+ matrix, ``true_ff`` the fat fraction of each labelled tissue (name -> FF).
    """
    rng = np.random.default_rng(seed)
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    grid = None
    if voxel_spacing is not None:
        voxel_spacing = tuple(float(v) for v in voxel_spacing)
        grid = (grid_shape(shape, spacing, voxel_spacing), voxel_spacing)
    tissues = {**TISSUES, "liver": (TISSUES["liver"][0], float(liver_ff))}
    names = list(tissues)
    tissue = _tissue_map(shape, spacing, rng, grid)
    shape, spacing = grid or (shape, spacing)
    pd = np.array([tissues[n][0] for n in names] + [0.0])[tissue]  # index -1 (air) -> 0
    ff = np.array([tissues[n][1] for n in names] + [0.0])[tissue]
    field = _bias_field(shape, bias, rng)
    water, fat = pd * (1 - ff) * field, pd * ff * field
    clean = {"water": water, "fat": fat, "in_phase": water + fat, "out_phase": np.abs(water - fat)}
    sigma = noise * max(p for p, _ in tissues.values())
    channels = {name: _rician(clean[name], sigma, rng) for name in CHANNELS}
    label = np.zeros(shape, dtype=np.uint8)
    for name in names:
        if name in LABELS:
            label[tissue == names.index(name)] = LABELS[name]
    true_ff = {name: tissues[name][1] for name in LABELS if name != "background"}
    return channels, label, phantom_affine(shape, spacing), true_ff


def dataset_json(n_training: int, channels: tuple[str, ...] = CHANNELS) -> dict:
    """nnU-Net v2 style ``dataset.json`` content for the phantom."""
    return {"name": "DixonPhantom", "description": "Synthetic abdominal water/fat (Dixon) phantom",
            "channel_names": {str(i): name for i, name in enumerate(channels)}, "labels": dict(LABELS),
            "numTraining": int(n_training), "file_ending": ".nii.gz"}


def reorient(
    array: np.ndarray, affine: np.ndarray, axes: tuple[int, int, int] = (0, 1, 2),
    flips: tuple[bool, bool, bool] = (False, False, False),
) -> tuple[np.ndarray, np.ndarray]:
    """The same volume stored another way: new array axis ``k`` is old axis ``axes[k]``, reversed where
    ``flips[k]``; the affine follows (rounded to float32), so every voxel keeps its place in the world."""
    ornt = np.zeros((3, 2))  # nibabel's orientation: per old axis, its new axis and direction
    for k, (old, flip) in enumerate(zip(axes, flips)):
        ornt[old] = (k, -1 if flip else 1)
    out = np.ascontiguousarray(apply_orientation(array, ornt))
    return out, (affine @ inv_ornt_aff(ornt, array.shape)).astype(np.float32).astype(np.float64)


def _write_case(root: Path, images: str, labels: str | None, case: str, data: tuple,
                axes: tuple[int, int, int] = (0, 1, 2), flips: tuple[bool, bool, bool] = (False, False, False)) -> None:
    channels, label, affine, _ = data
    label, stored = reorient(label, affine, axes, flips)
    reference = Volume(label, stored)
    for folder in filter(None, (images, labels)):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(CHANNELS):
        write_nifti(root / images / f"{case}_{index:04d}.nii.gz", reorient(channels[name], affine, axes, flips)[0],
                    reference)
    if labels:
        write_label(root / labels / f"{case}.nii.gz", label, reference)


def make_dataset(
    root: str | os.PathLike,
    n_cases: int = 8,
    shape: tuple[int, int, int] = (64, 64, 24),
    seed: int = 0,
    n_test: int = 0,
    spacing: tuple[float, float, float] = (1.5, 1.5, 3.0),
    overwrite: bool = False,
    voxel_spacing: tuple[float, float, float] | None = None,
    axes: tuple[int, int, int] = (0, 1, 2),
    flips: tuple[bool, bool, bool] = (False, False, False),
) -> Path:
    """Write a phantom data set in the nnU-Net raw layout under ``root`` and return ``root``.

    ``imagesTr/phantom_NNN_000{0..3}.nii.gz`` (water, fat, in-phase, out-phase), ``labelsTr/phantom_NNN.nii.gz``,
    ``dataset.json``, ``phantom_truth.json`` (true FF per case and tissue) and, if ``n_test``, ``imagesTs/``
    and ``labelsTs/``. The liver FF varies per case (uniform in [0.02, 0.30]).

    The same seed gives the same anatomy (``shape`` x ``spacing`` mm) whatever the storage: ``voxel_spacing``
    renders it at another resolution (e.g. 3 x 3 x 4 mm) over the same field of view, and ``axes`` / ``flips``
    store the arrays with permuted, reversed axes (see :func:`reorient`; the world geometry is unchanged).
    """
    root = Path(root)
    if (root / "dataset.json").exists() and not overwrite:
        raise DataError(f"{str(root)!r} already holds a dataset.json; pass overwrite=True to regenerate it")
    if n_cases < 1 or n_test < 0:
        raise DataError(f"phantom needs n_cases >= 1 and n_test >= 0, got {n_cases} and {n_test}")
    seeds = np.random.SeedSequence(seed).spawn(n_cases + n_test)
    truth = {}
    for index, case_seed in enumerate(seeds):
        case = f"{CASE_PREFIX}_{index:03d}"
        liver_ff = float(np.random.default_rng(case_seed).uniform(0.02, 0.30))
        data = make_case(shape, spacing, seed=int(case_seed.generate_state(1)[0]), liver_ff=round(liver_ff, 4),
                         voxel_spacing=voxel_spacing)
        split = ("imagesTr", "labelsTr") if index < n_cases else ("imagesTs", "labelsTs")
        _write_case(root, *split, case, data, tuple(axes), tuple(bool(f) for f in flips))
        truth[case] = data[3]
    write_json(root / TRUTH_FILE, truth, overwrite)
    write_json(root / "dataset.json", dataset_json(n_cases), overwrite)
    return root
