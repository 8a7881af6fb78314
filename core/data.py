"""The one DataModule: a domain hands it a builder that returns its datasets; it makes the loaders.

Sample contract (every dataset, every domain): ``{"image": float32 (C, H, W), "mask": int64 (H, W)}``,
pixels to ignore carrying the ignore index. Data with instance labels also gives ``"instances": int64 (H, W)``
(0 = none, ids unique within the sample) and reports ``has_instances: True`` in its meta. The training
dataset's ``meta`` (plain, JSON-able: channels, classes, normalisation, patch size...) is stored in every
checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from segsuite.core.errors import ConfigError, DataError

REQUIRED_META = ("in_channels", "num_classes", "class_names", "ignore_index")


class SegDataModule(L.LightningDataModule):
    """Loaders over the datasets a domain builds.

    Args:
        datasets: ``() -> {"train": ds, "val": ds, "test": ds (optional)}``, usually a Hydra ``_partial_``
            of a domain's ``build_datasets``. Called once, in :meth:`setup`.
        batch_size: training batch size (None: the training dataset's ``meta["batch_size"]``, e.g. from a domain's
            plan, else 8); ``eval_batch_size`` (default: the same) for val/test.
        num_workers: loader processes (0 = in the main process).
        targets: optional transform applied to every sample the loaders deliver (e.g.
            ``segsuite.core.instances.InstanceTargets`` adding the border weight map); it is bound to the data's meta
            first.
    """

    def __init__(self, datasets: Callable[[], Mapping[str, Dataset]], batch_size: int | None = 8,
                 eval_batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 targets: Callable[[dict], dict] | None = None) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"domain.datamodule.{name}={value!r}: expected a whole number >= 1")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"domain.datamodule.num_workers={num_workers!r}: expected a whole number >= 0")
        self.build = datasets
        self.targets = targets
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.splits: dict[str, Dataset] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = dict(self.build())
        missing = {"train", "val"} - set(splits)
        if missing:
            raise DataError(f"the domain's dataset builder returned no {sorted(missing)} split "
                            f"(it returned {sorted(splits)})")
        for name, ds in splits.items():
            if len(ds) == 0:
                raise DataError(f"the {name!r} split is empty: check the data path and split settings")
        self.splits = splits
        if self.batch_size is None:
            self.batch_size = int(self.meta.get("batch_size") or 8)
        self.eval_batch_size = self.eval_batch_size or self.batch_size
        if self.targets is not None and hasattr(self.targets, "bind"):
            self.targets.bind(self.meta)

    @property
    def meta(self) -> dict[str, Any]:
        """The training dataset's metadata (checked to hold the keys every domain must give)."""
        self.setup()
        meta = dict(getattr(self.splits["train"], "meta", {}))
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ConfigError(f"the training dataset's meta lacks {missing}; every domain must report "
                              f"{list(REQUIRED_META)}")
        return meta

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.splits[split] if self.targets is None else _Mapped(self.splits[split], self.targets)
        return DataLoader(
            dataset, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
            drop_last=train and len(self.splits[split]) > self.batch_size, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test" if "test" in self.splits else "val", train=False)


class _Mapped(Dataset):
    """``fn(dataset[i])``: a transform over the samples of a dataset (the split itself stays as the domain built it)."""

    def __init__(self, dataset: Dataset, fn: Callable[[dict], dict]) -> None:
        self.dataset, self.fn = dataset, fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.fn(self.dataset[index])
