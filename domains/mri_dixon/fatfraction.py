"""Signal fat fraction from Dixon water and fat magnitude images.

``FF = F / (W + F)`` voxel-wise, with negative (noise) values of W and F clipped to 0 first and the result in [0, 1].
Where the total signal ``W + F`` is below a threshold (air, lung, noise-only background) the ratio is meaningless;
those voxels get **0** (not NaN) so that FF maps can be written and fed to networks as they are, and
:func:`mean_fat_fraction` leaves them out of the mean. The threshold is ``min_signal`` if given, else
``relative_threshold`` times the 99th percentile of ``W + F`` in the case.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RELATIVE_THRESHOLD = 0.05


def _total(water: np.ndarray, fat: np.ndarray) -> np.ndarray:
    return np.clip(water, 0, None) + np.clip(fat, 0, None)


def signal_threshold(water: np.ndarray, fat: np.ndarray, min_signal: float | None = None,
                     relative_threshold: float = DEFAULT_RELATIVE_THRESHOLD) -> float:
    """Total-signal threshold below which FF is undefined (see module docstring)."""
    if min_signal is not None:
        return float(min_signal)
    total = _total(water, fat)
    return float(relative_threshold * np.percentile(total, 99)) if total.size else 0.0


def valid_signal(water: np.ndarray, fat: np.ndarray, min_signal: float | None = None,
                 relative_threshold: float = DEFAULT_RELATIVE_THRESHOLD) -> np.ndarray:
    """Boolean mask (same shape as the inputs) of voxels whose ``W + F`` reaches the threshold."""
    total = _total(water, fat)
    return (total >= signal_threshold(water, fat, min_signal, relative_threshold)) & (total > 0)


def fat_fraction(water: np.ndarray, fat: np.ndarray, min_signal: float | None = None,
                 relative_threshold: float = DEFAULT_RELATIVE_THRESHOLD) -> np.ndarray:
    """Voxel-wise FF in [0, 1] as float32, 0 where the signal is below the threshold; never NaN."""
    water = np.clip(np.asarray(water, dtype=np.float32), 0, None)
    fat = np.clip(np.asarray(fat, dtype=np.float32), 0, None)
    ff = np.zeros(water.shape, dtype=np.float32)
    np.divide(fat, water + fat, out=ff, where=valid_signal(water, fat, min_signal, relative_threshold))
    return ff


def fat_fraction_map(water: np.ndarray, fat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The FF map and its valid-signal mask with the case's own threshold (as :func:`mean_fat_fraction`)."""
    threshold = signal_threshold(water, fat)
    return fat_fraction(water, fat, min_signal=threshold), valid_signal(water, fat, min_signal=threshold)


def mean_fat_fraction(water: np.ndarray, fat: np.ndarray, mask: np.ndarray, min_signal: float | None = None,
                      relative_threshold: float = DEFAULT_RELATIVE_THRESHOLD) -> float:
    """Mean voxel FF inside ``mask`` over voxels with enough signal; NaN if there are none. The threshold comes from
    the whole images (not only the mask), so it is the same for every mask of a case."""
    threshold = signal_threshold(water, fat, min_signal, relative_threshold)
    valid = valid_signal(water, fat, min_signal=threshold) & np.asarray(mask, dtype=bool)
    if not valid.any():
        return float("nan")
    return float(fat_fraction(water, fat, min_signal=threshold)[valid].mean())
