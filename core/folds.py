"""K-fold splits over whole items, one function for every domain (nnU-Net's ``splits_final.json``).

A domain hands :func:`assign` the names of its items (MRI cases, road images, land-cover scenes or spatial blocks,
toy samples) and, where items belong together, their groups (a road city or sequence): a group is never split
between training and validation. :func:`kfold` deals the groups, shuffled by the seed, to the folds so each fold's
validation holds about ``len(items) / folds`` items. The splits are a list, one ``{"train": [...], "val": [...]}``
per fold (nnU-Net's format), written to ``RUN/splits.json`` by training; a user's own file of that format is read
with ``splits=PATH`` instead.

Training asks for a fold with :func:`requested` (``segsuite train fold=K folds=5``); while the request is active the
domains' split code calls :func:`assign`, which returns that fold's ``(train, val)`` names and records the splits.
Without a request :func:`assign` returns None and the domain splits as it always did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import ConfigError, DataError

Splits = list[dict[str, list[str]]]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class FoldRequest:
    """Which fold to train: ``fold`` of ``folds`` (seeded by ``seed``), or of the user's ``splits`` file.

    :attr:`splits` is filled by :func:`assign` with every fold's split (what ``splits.json`` holds).
    """

    fold: int
    folds: int = 5
    seed: int = 0
    path: str | None = None
    splits: Splits = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.folds = len(read_splits(self.path))
        check_fold(self.fold, self.folds)


def check_fold(fold: Any, folds: Any) -> None:
    """``folds``: a whole number >= 2; ``fold``: a whole number in [0, folds)."""
    if not _whole(folds) or folds < 2:
        raise ConfigError(f"folds={folds!r}: expected a whole number >= 2 (e.g. folds=5)")
    if not _whole(fold) or not 0 <= fold < folds:
        raise ConfigError(f"fold={fold!r}: expected a whole number from 0 to {folds - 1} (folds={folds}), or all")


def kfold(names: Sequence[str], folds: int, seed: int = 0, groups: Sequence[str] | None = None) -> Splits:
    """Deterministic k-fold of ``names``: groups (default: each name its own) shuffled by ``seed``, dealt largest
    first to the fold with the fewest validation items. Every name is in exactly one fold's ``val``."""
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise DataError(f"item names are not unique (e.g. {_first_duplicate(names)!r}); cannot split them into folds")
    groups = [str(g) for g in groups] if groups is not None else names
    if len(groups) != len(names):
        raise DataError(f"{len(groups)} groups for {len(names)} items")
    members: dict[str, list[str]] = {}
    for name, group in zip(names, groups, strict=True):
        members.setdefault(group, []).append(name)
    if len(members) < folds:
        what = "groups" if groups is not names else "items"
        raise ConfigError(f"folds={folds} but the data has {len(members)} {what} ({', '.join(list(members)[:6])}"
                          f"{'...' if len(members) > 6 else ''}); choose folds <= {len(members)}")
    keys = sorted(members)
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    order.sort(key=lambda g: -len(members[g]))  # stable: equal sizes keep the seeded order
    val: list[list[str]] = [[] for _ in range(folds)]
    for group in order:
        target = min(range(folds), key=lambda k: (len(val[k]), k))
        val[target] += members[group]
    return [{"train": sorted(set(names) - set(v)), "val": sorted(v)} for v in val]


def _first_duplicate(names: Sequence[str]) -> str:
    seen: set[str] = set()
    return next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]


def read_splits(path: str | Path) -> Splits:
    """A splits file (a JSON list of ``{"train": [...], "val": [...]}``, nnU-Net's ``splits_final.json``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"splits={path}: no such file; give a JSON list of {{\"train\": [...], \"val\": [...]}} "
                          "per fold (nnU-Net's splits_final.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"splits={path} is not JSON ({err})") from None
    ok = isinstance(data, list) and len(data) >= 2 and all(
        isinstance(f, dict) and set(f) >= {"train", "val"} and all(isinstance(f[s], list) for s in ("train", "val"))
        for f in data)
    if not ok:
        raise ConfigError(f"splits={path}: expected a JSON list of at least 2 folds, each {{\"train\": [...], "
                          "\"val\": [...]}} (nnU-Net's splits_final.json)")
    return [{"train": [str(n) for n in f["train"]], "val": [str(n) for n in f["val"]]} for f in data]


def _check_user_splits(splits: Splits, names: Sequence[str], path: str) -> None:
    known = set(names)
    for k, fold in enumerate(splits):
        unknown = sorted((set(fold["train"]) | set(fold["val"])) - known)
        if unknown:
            raise ConfigError(f"splits={path}: fold {k} names {unknown[:5]}, not items of this data; its items: "
                              f"{', '.join(sorted(known)[:8])}{'...' if len(known) > 8 else ''}")
        both = sorted(set(fold["train"]) & set(fold["val"]))
        if both or not fold["train"] or not fold["val"]:
            raise ConfigError(f"splits={path}: fold {k} needs disjoint, non-empty train and val "
                              f"({'in both: ' + str(both[:5]) if both else 'one is empty'})")


_REQUEST: ContextVar[FoldRequest | None] = ContextVar("fold_request", default=None)


@contextmanager
def requested(request: FoldRequest | None) -> Iterator[FoldRequest | None]:
    """While active, :func:`assign` splits the data into ``request``'s fold (None: no fold, nothing changes)."""
    token = _REQUEST.set(request)
    try:
        yield request
    finally:
        _REQUEST.reset(token)


def assign(names: Sequence[str], groups: Sequence[str] | None = None) -> tuple[list[str], list[str]] | None:
    """The requested fold's ``(train names, val names)`` of ``names``, or None when no fold was asked for.

    Called by a domain's split code with its items (and their groups), split with the request's seed.
    """
    request = _REQUEST.get()
    if request is None:
        return None
    if request.path is not None:
        splits = read_splits(request.path)
        _check_user_splits(splits, [str(n) for n in names], request.path)
    else:
        splits = kfold(names, request.folds, request.seed, groups)
    request.splits = splits
    chosen = splits[request.fold]
    return list(chosen["train"]), list(chosen["val"])


def active() -> FoldRequest | None:
    """The fold request of the running training, if any."""
    return _REQUEST.get()
