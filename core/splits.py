"""Training / validation splits of a data set's items by name, written once for every domain: the requested k-fold
(:mod:`segsuite.core.folds`), the items the user names, or a seeded random fraction. Items are whole (an MRI case, a
road image), never parts of one, so no item is both trained and validated on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segsuite.core import folds
from segsuite.core.errors import ConfigError


def split_names(names: Sequence[str], val_fraction: float = 0.2, val_names: Sequence[str] | None = None,
                seed: int = 0, what: str = "items") -> tuple[list[str], list[str]]:
    """``(train, val)`` names: the requested fold (``fold=K``) unless ``val_names`` are given, else ``val_names``
    (all must be items), else ``round(len * val_fraction)`` names drawn with ``seed`` (at least one, and at least one
    left to train on). Both lists keep the order of ``names``; ``what`` names the items in errors."""
    names = list(names)
    chosen = folds.assign(names) if val_names is None else None
    if chosen is not None:
        return chosen
    if val_names is not None:
        unknown = sorted(set(val_names) - set(names))
        if unknown:
            raise ConfigError(f"validation {what} {unknown} are not in the data set; {what}: {names}")
        val = set(val_names)
    else:
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}; or name the validation {what}")
        count = min(len(names) - 1, max(1, round(len(names) * val_fraction)))
        val = {names[i] for i in np.random.default_rng(seed).permutation(len(names))[:count]}
    train = [n for n in names if n not in val]
    if not train or not val:
        raise ConfigError(f"split leaves {len(train)} training and {len(val)} validation {what}; need at least 1 each")
    return train, [n for n in names if n in val]
