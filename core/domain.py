"""What a domain builds on: the contract's protocols (:mod:`segsuite.core.contracts`) with every default written once.

A domain subclasses these and writes only what is its own. Required members (the README's "Adding a domain"):

* :class:`BaseReader`: ``find``, ``check``, ``open`` (3);
* :class:`BaseOpened`: ``sources`` (1; ``restore``, ``close``, ``streaming``, ``options`` have defaults;
  :class:`OpenedArrays` is one for arrays in memory);
* :class:`BaseWriter`: ``outputs``, ``sink`` (2; ``run_outputs``, ``finish`` default to none);
* :class:`BaseSink`: ``update``, ``close`` (2; ``abort`` does nothing);
* :class:`BaseEvaluation`: ``labelled`` (1: the split's items with their targets; ``scorers`` default to the semantic
  scores, ``report_files`` to theirs).

Nine in all. The optional hooks (an in-memory array, the demo page's examples and previews, an item's valid mask,
cell size and value maps) have defaults here too and are documented on the protocols in
:mod:`segsuite.core.contracts`. A source whose tiles are normalised on the device builds on :class:`BaseRawSource`
(``load`` and ``normalizer`` its own).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from segsuite.core.inference import InferenceOptions, Source


class BaseOpened:
    """An opened item predicted whole (not streamed), its logits already on the item's grid; a subclass gives its
    ``sources``."""

    sources: Sequence[Source]
    streaming: bool = False
    options: InferenceOptions | None = None

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def close(self) -> None:
        pass


@dataclass
class OpenedArrays(BaseOpened):
    """In-memory sources predicted whole, their logits kept as they are."""

    sources: Sequence[Source]


class BaseRawSource(ABC):
    """A source whose ``load`` gives tiles in the file's dtype with their valid mask and whose ``normalizer`` makes a
    batch of them model-ready on the device (:class:`~segsuite.core.inference.sources.RawSource`; the engine calls
    ``load``): ``read`` and ``skip``, the plain source's, follow from those two; nothing to close by default, and a
    ``with`` block closes it."""

    normalizer: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]

    @abstractmethod
    def load(self, window: Any) -> tuple[np.ndarray, np.ndarray]: ...

    def read(self, window: Any) -> np.ndarray:
        """Model-ready float32 ``(C, h, w)``, normalised exactly as the engine does it on the device."""
        data, valid = self.load(window)
        return self.normalizer(torch.from_numpy(data)[None], torch.from_numpy(valid)[None])[0].numpy()

    def skip(self, window: Any) -> bool:
        """True when the window holds only nodata."""
        return not self.load(window)[1].any()

    def close(self) -> None:  # noqa: B027 (a default, not a missing member)
        """Release file handles (none by default)."""

    def __enter__(self) -> BaseRawSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BaseReader(ABC):
    """A domain's reader; ``find``, ``check`` and ``open`` are its own (:class:`~segsuite.core.contracts.Reader`)."""

    @abstractmethod
    def find(self, input: Any, job: Job) -> list[Item]: ...

    @abstractmethod
    def check(self, item: Item, job: Job) -> None: ...

    @abstractmethod
    def open(self, item: Item, job: Job) -> Any: ...

    def prepare(self, job: Job) -> Job:
        """The job this reader's items are predicted with, decided once per run (e.g. the TTA flips a model may use);
        returns a new job rather than changing the caller's."""
        return job

    def from_array(self, array: np.ndarray, job: Job) -> Any:
        """An in-memory input for the Python API; refused unless the domain says how it reads one."""
        raise ConfigError(f"domain {job.model.domain or type(self).__name__!r} predicts files, not in-memory arrays; "
                          "pass a path")

    def examples(self, folder: Path, job: Job) -> list[Path]:
        """Small inputs the demo page offers (written into ``folder`` once); none by default."""
        return []

    def preview(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The input as RGB uint8 ``(*shape, 3)`` for the demo page, or None; by default images Pillow reads and
        ``.npy`` arrays."""
        from segsuite.core.preview import input_preview

        return input_preview(path, shape)


class BaseSink(ABC):
    """Takes an item's predictions; ``update`` and ``close`` are its own."""

    @abstractmethod
    def update(self, prediction: Prediction) -> None: ...

    @abstractmethod
    def close(self) -> Any: ...

    def abort(self) -> None:  # noqa: B027 (a default, not a missing member)
        """After an error; the core removes the staged files anyway."""


class BaseWriter(ABC):
    """A domain's writer; ``outputs`` and ``sink`` are its own, a run writes no files of its own by default."""

    @abstractmethod
    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]: ...

    @abstractmethod
    def sink(self, item: Item, opened: Any, paths: Mapping[str, Path], job: Job) -> Any: ...

    def run_outputs(self, items: Sequence[Item], output: Path, folder: bool, job: Job) -> dict[str, Path]:
        return {}

    def finish(self, results: Sequence[Any], paths: Mapping[str, Path], job: Job) -> None:  # noqa: B027
        """After every item: write the run's own files (none by default)."""


@dataclass
class ScoreSink(BaseSink):
    """Scores a whole item with ``add(prediction)`` (e.g. a scorer's method with the item bound)."""

    add: Callable[[Prediction], None]

    def update(self, prediction: Prediction) -> None:
        self.add(prediction)

    def close(self) -> None:
        return None


@dataclass
class TargetSink(BaseSink):
    """Counts a whole item's classes against its target ``(*spatial)`` in the split's semantic scores."""

    scores: Any
    target: Any

    def update(self, prediction: Prediction) -> None:
        self.scores.add(prediction.classes, np.asarray(self.target))

    def close(self) -> None:
        return None


@dataclass
class SemanticScorer:
    """mIoU, Dice, accuracy per class and the confusion matrix over a split (``metrics.json``, ``per_class.csv``,
    ``confusion.png``); items carry their target array or a domain's ``target_sink`` reads it."""

    job: Job
    split: str
    scores: Any = field(init=False)

    def __post_init__(self) -> None:
        from segsuite.core.evaluate import SemanticScores

        self.scores = SemanticScores(self.job)

    def sink(self, item: Item, opened: Any, out: Path, job: Job) -> BaseSink:
        return TargetSink(self.scores, item.target)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        return self.scores.report(out, {"split": self.split, "checkpoint": job.model.checkpoint, **self.extra(job)})

    def extra(self, job: Job) -> dict[str, Any]:
        """What a domain adds to ``metrics.json`` (none by default)."""
        return {}


@dataclass
class BaseEvaluation(ABC):
    """A domain's evaluation of one ``split`` of its data set: the labelled items are its own (:meth:`labelled`);
    the split is looked up, and the checkpoint's classes compared with the data's, once, here."""

    split: str = "test"

    @abstractmethod
    def labelled(self, data: Any, job: Job) -> list[Item]:
        """The items of ``data`` (the split's dataset) with their ``target``."""

    def items(self, datasets: Mapping[str, Any], job: Job) -> tuple[str, list[Item]]:
        if self.split not in datasets:
            raise DataError(f"the data has no {self.split!r} split; it has {sorted(datasets)}")
        data = datasets[self.split]
        ours, theirs = list(job.model.meta.class_names), getattr(data, "meta", {}).get("class_names")
        if theirs is not None and list(theirs) != ours:
            raise ConfigError(f"checkpoint {job.model.checkpoint} was trained with classes {ours} but the evaluation "
                              f"data has {list(theirs)}; evaluate on data with the same classes")
        return self.split, self.labelled(data, job)

    def scorers(self, job: Job) -> list[Any]:
        return [SemanticScorer(job, self.split)]

    def report_files(self, job: Job) -> list[str]:
        from segsuite.core.evaluate import SEMANTIC_REPORTS

        return list(SEMANTIC_REPORTS)


def prepared(reader: Any, job: Job) -> Job:
    """``reader.prepare(job)`` for readers that have the hook (every :class:`BaseReader`), else ``job``."""
    prepare = getattr(reader, "prepare", None)
    return prepare(job) if prepare is not None else job
