"""Toy domain evaluation: the semantic scores of one split of the built-in data set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segsuite.core.contracts import Item, Job
from segsuite.core.domain import BaseEvaluation


@dataclass
class ToyEvaluation(BaseEvaluation):
    """Every sample of ``split`` as an item (image in memory, mask as target)."""

    def labelled(self, data: Any, job: Job) -> list[Item]:
        samples = (data[i] for i in range(len(data)))
        return [Item(f"{self.split}_{i:04d}", s["image"].numpy(), target=s["mask"].numpy())
                for i, s in enumerate(samples)]
