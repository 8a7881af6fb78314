"""Splits by named items, by seeded fraction, or by the requested fold (core/splits.py)."""

from __future__ import annotations

import pytest

from segsuite.core import folds
from segsuite.core.errors import ConfigError
from segsuite.core.splits import split_names

NAMES = [f"c{i}" for i in range(10)]


def test_a_seeded_fraction_of_whole_items():
    train, val = split_names(NAMES, 0.3, seed=1)
    assert len(val) == 3 and sorted(train + val) == NAMES and not set(train) & set(val)
    assert split_names(NAMES, 0.3, seed=1) == (train, val)  # the seed decides
    assert split_names(NAMES, 0.3, seed=2)[1] != val
    assert train == sorted(train) and val == sorted(val)  # in the order of the names
    assert len(split_names(NAMES[:3], 0.01)[1]) == 1 and len(split_names(NAMES[:3], 0.99)[0]) == 1  # both non-empty


def test_named_items_win_over_the_fraction():
    assert split_names(NAMES, 0.5, ["c7", "c2"]) == ([n for n in NAMES if n not in ("c2", "c7")], ["c2", "c7"])
    with pytest.raises(ConfigError, match=r"validation cases \['nope'\] are not in the data set"):
        split_names(NAMES, val_names=["nope"], what="cases")
    with pytest.raises(ConfigError, match="split leaves 0 training and 10 validation"):
        split_names(NAMES, val_names=NAMES)
    for bad in (0, 1, 1.5):
        with pytest.raises(ConfigError, match="val_fraction must be in"):
            split_names(NAMES, bad)


def test_the_requested_fold_wins_unless_items_are_named():
    with folds.requested(folds.FoldRequest(fold=1, folds=5, seed=0)) as request:
        train, val = split_names(NAMES, 0.3)
        assert (train, val) == (request.splits[1]["train"], request.splits[1]["val"]) and len(val) == 2
        assert split_names(NAMES, 0.3, ["c0"])[1] == ["c0"]
