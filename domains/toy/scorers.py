"""Toy domain evaluation: the semantic scores of one split of the built-in data set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.errors import DataError
from segsuite.core.evaluate import SEMANTIC_REPORTS, SemanticScores


@dataclass
class ToyEvaluation:
    """Every sample of ``split`` as an item (image in memory, mask as target)."""

    split: str = "test"

    def items(self, datasets: Mapping[str, Any], job: Job) -> tuple[str, list[Item]]:
        if self.split not in datasets:
            raise DataError(f"the data has no {self.split!r} split; it has {sorted(datasets)}")
        data = datasets[self.split]
        samples = (data[i] for i in range(len(data)))
        return self.split, [Item(f"{self.split}_{i:04d}", s["image"].numpy(), target=s["mask"].numpy())
                            for i, s in enumerate(samples)]

    def scorers(self, job: Job) -> list[SemanticScorer]:
        return [SemanticScorer(SemanticScores(job), self.split)]

    def report_files(self, job: Job) -> list[str]:
        return list(SEMANTIC_REPORTS)


@dataclass
class SemanticScorer:
    scores: SemanticScores
    split: str

    def sink(self, item: Item, opened: Any, out: Path, job: Job) -> TargetSink:
        return TargetSink(self.scores, item.target)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        return self.scores.report(out, {"split": self.split, "checkpoint": job.model.checkpoint})


@dataclass
class TargetSink:
    scores: SemanticScores
    target: np.ndarray

    def update(self, prediction: Prediction) -> None:
        self.scores.add(prediction.classes, self.target)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        pass
