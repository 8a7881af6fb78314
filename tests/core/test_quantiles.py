"""core.quantiles: np.percentile's numbers, bit for bit, for large arrays with ties, several dtypes and tails."""

import numpy as np
import pytest

from segsuite.core import quantiles
from segsuite.core.quantiles import tail_percentiles


@pytest.mark.parametrize("kind", ["normal", "ties", "heavy", "uint16"])
def test_tail_percentiles_are_numpys(kind):
    rng = np.random.default_rng(len(kind))
    n = 700_007
    a = {"normal": lambda: rng.normal(size=n).astype(np.float32),
         "ties": lambda: rng.integers(0, 30, n).astype(np.float32),
         "heavy": lambda: rng.exponential(size=n) ** 4,
         "uint16": lambda: rng.integers(0, 4000, n).astype(np.uint16)}[kind]()
    for q in ([0.5, 99.5], [0.0, 100.0], [3.7, 96.1], [1.0]):
        ours, theirs = tail_percentiles(a.reshape(7, -1), q), np.percentile(a, q)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), (q, ours, theirs)
    fortran = np.asfortranarray(a.reshape(7, -1))  # a NIfTI volume's order: its values read as they lie
    assert np.array_equal(tail_percentiles(fortran, [0.5, 99.5]), np.percentile(a, [0.5, 99.5]))


def test_non_finite_small_or_central_cases_are_numpys(monkeypatch):
    a = np.random.default_rng(0).normal(size=700_000).astype(np.float32)
    assert np.array_equal(tail_percentiles(a, [50.0]), np.percentile(a, [50.0]))  # the middle: a half-size subset
    a[5] = np.nan
    assert np.isnan(tail_percentiles(a, [0.5, 99.5])).all()  # as numpy: NaN propagates
    assert np.array_equal(tail_percentiles(a[10:110], [10.0]), np.percentile(a[10:110], [10.0]))
    monkeypatch.setattr(quantiles, "MARGIN", 0.0)  # a threshold short of the rank: numpy's own path
    b = np.arange(700_000, dtype=np.float32)[::-1].copy()
    assert np.array_equal(tail_percentiles(b, [0.5, 99.5]), np.percentile(b, [0.5, 99.5]))
