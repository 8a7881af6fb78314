"""np.percentile's numbers for large arrays at tail percentiles (the 0.5th and 99.5th of an MRI channel), without
partitioning a copy of every value.

``np.percentile`` copies the array and partitions it around the order statistics it needs: about 40 ms a channel of
256 x 256 x 64 on one core, four times per MRI case before the network can start. The order statistics of the
tails are those of a small subset: the values at or below a threshold that a strided sample places safely past
the wanted rank are the smallest ones of the array, in order (and those at or above a threshold, the largest). So
:func:`tail_percentiles` selects that subset with one comparison pass, partitions it, and interpolates with numpy's own
helpers for the linear method (its default), so the result is np.percentile's bit for bit (tested). Small arrays,
non-finite values, a numpy without those helpers, or a subset that misses the rank fall back to np.percentile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:  # numpy's linear-method pieces: the same virtual index, neighbours, weight and interpolation as np.percentile
    from numpy.lib._function_base_impl import _get_gamma, _get_indexes, _lerp, _QuantileMethods
except ImportError:  # another numpy layout: np.percentile itself
    _lerp = None

SAMPLE = 1 << 16  # values in the strided sample that places the thresholds
MARGIN = 2.0  # the threshold's expected rank, as a multiple of the wanted one (plus a few samples)


def tail_percentiles(array: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(array, q)`` (linear interpolation, over all values) as float64, equal bit for bit."""
    flat = np.ravel(array, order="K")  # the values in memory order: no copy of a Fortran-ordered volume
    n = flat.size
    if _lerp is None or n < 8 * SAMPLE or (flat.dtype.kind == "f" and not np.isfinite(flat).all()):
        return np.percentile(flat, q)
    method = _QuantileMethods["linear"]
    virtual = np.asanyarray(method["get_virtual_index"](n, np.true_divide(np.asanyarray(q, np.float64), 100)))
    previous, following = _get_indexes(flat, virtual, n)
    ranks = np.unique(np.concatenate([previous, following]) % n)  # -1: the largest
    found = _order_statistics(flat, ranks)
    if found is None:
        return np.percentile(flat, q)
    values = dict(zip(ranks.tolist(), found, strict=True))
    low = np.array([values[k % n] for k in previous], flat.dtype)
    high = np.array([values[k % n] for k in following], flat.dtype)
    return _lerp(low, high, _get_gamma(virtual, previous, method))


def _order_statistics(flat: np.ndarray, ranks: np.ndarray) -> list | None:
    """The values of rank ``ranks`` (sorted, 0 = smallest) of ``flat``, or None where a subset misses one."""
    n, out = flat.size, []
    sample = flat[:: max(1, n // SAMPLE)]
    m = sample.size
    low, high = ranks[ranks < n // 2], ranks[ranks >= n // 2]
    if low.size:
        j = min(m - 1, int(np.ceil((low[-1] + 1) / n * m * MARGIN)) + 8)
        subset = flat[flat <= np.partition(sample, j)[j]]  # the |subset| smallest values
        if subset.size <= low[-1]:
            return None
        out += list(np.partition(subset, low)[low])
    if high.size:
        j = min(m - 1, int(np.ceil((n - high[0]) / n * m * MARGIN)) + 8)
        subset = flat[flat >= np.partition(sample, m - 1 - j)[m - 1 - j]]  # the |subset| largest values
        offset = n - subset.size
        if offset > high[0]:
            return None
        out += list(np.partition(subset, high - offset)[high - offset])
    return out
