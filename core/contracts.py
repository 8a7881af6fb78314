"""What the core and a domain say to each other, written down once.

The core runs every predict and evaluate job (:mod:`segsuite.core.pipeline`): it finds the inputs, plans every output,
checks everything before any work, stages, loops over the items with one progress bar, runs the network through
the tiled engine, cuts instances, hands predictions to sinks and scorers, and commits all outputs or none. A
domain answers three questions through the small protocols below:

* how do I read it: a :class:`Reader` turns the user's ``input`` into :class:`Item` s and opens one item as an
  :class:`Opened` (the engine's sources plus how to bring the logits back onto the item's own grid);
* how do I write it: a :class:`Writer` names the files of an item and gives a :class:`Sink` that writes them;
* how do I score it: an :class:`Evaluation` lists the labelled items of a split (from the dataset builder) and
  gives :class:`Scorer` s whose sinks compare predictions with the truth and whose reports are written at the end.

Sample contract of training data (every domain): ``{"image": float32 (C, H, W), "mask": int64 (H, W)}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from segsuite.core.errors import ConfigError

if TYPE_CHECKING:
    from segsuite.core.inference import InferenceOptions, Source, TilePredictor
    from segsuite.core.instances import Instancer, Instances


class Mode(str, Enum):
    """What a job predicts: classes only, or also the instances of the thing classes (and a panoptic map)."""

    SEMANTIC = "semantic"
    INSTANCE = "instance"
    PANOPTIC = "panoptic"

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        """``task=...`` from the command line; a ConfigError lists the choices."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"task={value!r} is not one of {', '.join(m.value for m in cls)}") from None


@dataclass(frozen=True)
class DataMeta:
    """What the training data reported about itself; stored in every checkpoint (as a plain dict).

    The label space and channels are typed fields; anything a domain adds (bands, normalisation statistics, label
    format, axis...) stays in ``extra`` and reads as ``meta["key"]`` / ``meta.get("key")``.
    """

    in_channels: int
    num_classes: int
    class_names: tuple[str, ...]
    ignore_index: int = 255
    class_colors: tuple[tuple[int, ...], ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    TYPED = ("in_channels", "num_classes", "class_names", "ignore_index", "class_colors")

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> DataMeta:
        meta = dict(meta)
        colors = meta.get("class_colors")
        return cls(
            in_channels=int(meta["in_channels"]), num_classes=int(meta["num_classes"]),
            class_names=tuple(str(n) for n in meta["class_names"]), ignore_index=int(meta.get("ignore_index", 255)),
            class_colors=tuple(tuple(int(v) for v in c) for c in colors) if colors else None,
            extra={k: v for k, v in meta.items() if k not in cls.TYPED},
        )

    def to_dict(self) -> dict[str, Any]:
        typed = {k: getattr(self, k) for k in self.TYPED}
        typed["class_names"] = list(self.class_names)
        typed["class_colors"] = [list(c) for c in self.class_colors] if self.class_colors else None
        return {**self.extra, **typed}

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key) if key in self.TYPED else self.extra[key]

    def __contains__(self, key: str) -> bool:
        return key in self.TYPED or key in self.extra

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model as the pipeline and the domains see it (instead of the LightningModule).

    ``predictor`` returns ``channels`` channels: the ``num_classes`` class logits, then the border logit when
    ``border`` (only when instances are cut with a model trained with a border channel).
    """

    predictor: TilePredictor
    meta: DataMeta
    channels: int
    border: bool
    checkpoint: str = ""
    domain: str = ""
    things: tuple[str, ...] = ()
    engine_channels: int = 0  # channels the engine blends when not ``channels`` (an ensemble: every model's classes)
    combine: Callable[[torch.Tensor], torch.Tensor] | None = None  # blended block -> ``channels`` logits (ensembles)

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes


@dataclass(frozen=True)
class Job:
    """One predict or evaluate run: the model, what to predict, and how; ``progress``: draw the progress bar (off for
    library callers who time or embed a run)."""

    model: ModelInfo
    mode: Mode = Mode.SEMANTIC
    instancer: Instancer | None = None
    options: InferenceOptions | None = None
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Item:
    """One unit of work: a scene, a volume, a frame, a held-out region.

    ``source`` is whatever the domain's reader opens (a path, channel files, a region); ``rel`` is the item's path
    relative to the input root, which names its outputs in a folder; ``target`` is where its labels are (evaluate).
    """

    name: str
    source: Any
    rel: Path = Path()
    target: Any = None


@runtime_checkable
class Opened(Protocol):
    """An opened item: what the engine predicts and how the result maps back onto the item.

    ``streaming`` items (rasters larger than memory) reach the sinks as row blocks of each source as soon as they
    are final; other items are assembled whole: every source's logits ``(C, H, W)`` (stacked along dim 1 when there
    are several sources, e.g. the slices of a volume) go through :meth:`restore` once. An item may carry its own
    ``options`` (:class:`InferenceOptions`, e.g. a 3D model's patch-sized windows), which the pipeline uses instead of
    the job's. A streaming item whose sinks take rectangles sets ``bands = True`` (optional; absent means False): a
    raster wider than the options' ``band`` then reaches them in column bands (:class:`Prediction`).
    """

    sources: Sequence[Source]
    streaming: bool

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        """Whole items: logits ``(C, *S)`` on the model grid -> ``(C, *spatial)`` on the item's own grid."""

    def close(self) -> None:
        """Release file handles."""


@dataclass
class Prediction:
    """What sinks receive: a rectangle of one source (streaming items) or a whole item.

    ``logits`` ``(C, *spatial)`` float32 on the predictor's device (class logits, then the border logit);
    ``classes`` ``(*spatial)`` uint8 (int64 beyond 256 classes); ``border`` the border probability or None;
    ``covered`` False where no window was computed (skipped nodata), None when all was; ``row0``, ``col0`` (its
    width: the arrays') and ``source`` place a block: full-width rows unless the opened item asks for column bands
    (``Opened.bands``), then each band's blocks top to bottom, bands left to right; ``instances`` is set for whole
    items when the job cuts instances. ``logits`` is None for a whole item whose sinks all set ``needs_logits =
    False`` (:class:`Sink`; the pipeline then never holds its restored logits).
    """

    logits: torch.Tensor | None
    classes: np.ndarray
    border: np.ndarray | None = None
    covered: np.ndarray | None = None
    row0: int = 0
    source: int = 0
    col0: int = 0
    instances: Instances | None = None
    num_classes: int = 0
    _probabilities: torch.Tensor | None = None

    @property
    def probabilities(self) -> torch.Tensor:
        """Softmax over the class logits ``(K, *spatial)``, computed once."""
        if self._probabilities is None:
            self._probabilities = self.logits[: self.num_classes].softmax(0)
        return self._probabilities


class Sink(Protocol):
    """Takes an item's predictions (:meth:`update`, once per block or once for a whole item) and finishes its files
    or scores in :meth:`close`; :meth:`abort` after an error (the staged files are removed by the core anyway). A
    sink that never reads ``Prediction.logits`` may say so with a ``needs_logits = False`` attribute."""

    def update(self, prediction: Prediction) -> None: ...

    def close(self) -> Any: ...

    def abort(self) -> None: ...


class Reader(Protocol):
    """Reads a domain's inputs."""

    def find(self, input: Any, job: Job) -> list[Item]:
        """The items named by the user's ``input`` (a file, folder, glob, list...); a DataError when there are none."""

    def check(self, item: Item, job: Job) -> None:
        """Cheap checks before any work (readable, the checkpoint's channels...): a DataError naming the file."""

    def open(self, item: Item, job: Job) -> Opened:
        """Open one item for prediction."""


class Writer(Protocol):
    """Writes a domain's outputs. Paths are final destinations; the core stages them and commits all or nothing."""

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        """Every file ``item`` produces, by kind: under the folder ``output`` when ``folder``, else ``output`` is the
        item's main output file and the others sit beside it."""

    def run_outputs(self, items: Sequence[Item], output: Path, folder: bool, job: Job) -> dict[str, Path]:
        """Files the whole run produces once (e.g. one panoptic JSON), by kind; usually none. ``items``: every item of
        the run (for checks across items, before any work)."""

    def sink(self, item: Item, opened: Opened, paths: Mapping[str, Path], job: Job) -> Sink:
        """A sink writing ``item``'s files to ``paths`` (staged locations of :meth:`outputs`)."""

    def finish(self, results: Sequence[Any], paths: Mapping[str, Path], job: Job) -> None:
        """After every item: write the run outputs to ``paths`` (staged) from what the sinks' ``close`` returned."""


class Scorer(Protocol):
    """Compares predictions with the truth over a split and writes its reports."""

    def sink(self, item: Item, opened: Opened, out: Path, job: Job) -> Sink:
        """A sink scoring ``item`` (``out``: the staged report folder, for per-item files such as overlays)."""

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        """Write the report files into ``out`` (staged) and return the summary."""


class Evaluation(Protocol):
    """A domain's evaluation: which labelled items, and which scorers."""

    def items(self, datasets: Mapping[str, Any], job: Job) -> tuple[str, list[Item]]:
        """``(split name, labelled items)`` from the domain's dataset builder output."""

    def scorers(self, job: Job) -> list[Scorer]:
        """The scorers of this job (semantic metrics, domain metrics, panoptic quality when the mode asks)."""

    def report_files(self, job: Job) -> list[str]:
        """Names of the report files written into the output folder (checked before any work)."""
