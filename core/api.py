"""A trained model from Python in three lines, through the same pipeline as the command line::

    from segsuite.core.api import Segmenter
    seg = Segmenter.from_checkpoint("outputs/train/landcover/<run>/checkpoints/last.ckpt")
    result = seg.predict("scene.tif")          # or an array (C, H, W) / (C, D, H, W); result.colorize()

:meth:`Segmenter.predict` opens a file with the domain's reader (``find`` -> one item -> ``open``) or an array with
the reader's optional ``from_array`` (below), so an array gets exactly what a file gets: the normalisation, nodata
rule and scale stored in the checkpoint. :meth:`Segmenter.predict_file` is the CLI's ``predict``.

Arrays (an optional :class:`~segsuite.core.contracts.Reader` method, :class:`ArrayReader`)::

    def from_array(self, array: np.ndarray, job: Job) -> Opened:
        '''An in-memory input of the domain (its documented shape, e.g. (C, H, W), or (C, D, H, W) for volumes) opened
        like a file: the same checks (a DataError naming the shape and what is accepted) and the same preparation
        (normalisation, nodata, scale) as ``open`` gives a file, from the checkpoint's ``job.model.meta``.'''

An :class:`~segsuite.core.contracts.Opened` may also say where its input holds data (the rest of ``Result.classes`` gets
the ignore index, as the domain's writer writes nodata there)::

    def valid(self, prediction: Prediction) -> np.ndarray:
        '''Bool ``(rows, W)`` of the prediction's row block (or the whole item): True where the input has data.'''

and what the numbers of a :class:`Result` are in the world::

    def cell_size(self) -> tuple[float, str] | None:
        '''One pixel's area or one voxel's volume and its unit, e.g. ``(0.01, "ha")`` or ``(0.0135, "mL")``; None
        when unknown (a raster in a geographic CRS).'''

    def values(self) -> dict[str, np.ndarray]:
        '''Maps on the item's own grid to average per class and per instance, e.g. ``{"fat_fraction": (X, Y, Z)}``.'''
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import hydra.utils
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from segsuite.core.checkpoint import describe
from segsuite.core.cli import CONF
from segsuite.core.contracts import Item, Job, Mode, Opened, Prediction, Reader, Writer
from segsuite.core.domain import prepared
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances import Instances, measure_instances
from segsuite.core.overlay import default_colors, instance_edges
from segsuite.core.pipeline import predict_item, run_predict
from segsuite.core.predict import load_job


@runtime_checkable
class ArrayReader(Protocol):
    """A :class:`~segsuite.core.contracts.Reader` that also opens in-memory arrays (see the module docstring)."""

    def from_array(self, array: np.ndarray, job: Job) -> Opened: ...


# ----------------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------------



@dataclass
class Result:
    """One prediction, on the input's own grid.

    Shape:
        classes: ``(H, W)`` or ``(D, H, W)`` class ids (uint8 up to 256 classes); ``ignore_index`` where nothing was
            predicted (nodata). A preview of a large raster keeps every ``stride``-th row and column.
        probabilities: ``(K, *spatial)`` float32 softmax, when asked for.
        instances: ``(*spatial)`` int32 instance ids (0 = none), for ``mode`` instance or panoptic.
        instance_table: one row per instance (id, class, pixels/voxels, centroid, box, size in ``cell_unit``,
            means of ``values``).
        cell_size, cell_unit: one pixel's (voxel's) area (volume) in the world, when the input says.
        values: maps on the grid of ``classes`` (e.g. the fat fraction) averaged per class in :meth:`class_table`.
    """

    classes: np.ndarray
    class_names: tuple[str, ...]
    class_colors: np.ndarray
    ignore_index: int = 255
    probabilities: np.ndarray | None = None
    instances: np.ndarray | None = None
    instance_table: list[dict[str, Any]] = field(default_factory=list)
    mode: Mode = Mode.SEMANTIC
    stride: int = 1
    cell_size: float | None = None
    cell_unit: str = ""
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def colorize(self, outlines: bool = True) -> np.ndarray:
        """RGB uint8 ``(*spatial, 3)``: each class in its colour, black where nothing was predicted; with
        ``outlines``, instance borders in white."""
        size = max(256, len(self.class_colors), int(self.classes.max(initial=0)) + 1)
        table = np.zeros((size, 3), np.uint8)  # unknown ids (the ignore index) stay black
        table[: len(self.class_colors)] = self.class_colors
        rgb = table[self.classes]
        if outlines and self.instances is not None:
            rgb[instance_edges(self.instances)] = 255
        return rgb

    def legend(self, present_only: bool = False) -> list[tuple[str, tuple[int, int, int]]]:
        """``(class name, (r, g, b))`` for every class (only those in the prediction with ``present_only``)."""
        present = set(np.unique(self.classes).tolist()) if present_only else set(range(len(self.class_names)))
        return [(name, tuple(int(v) for v in self.class_colors[i])) for i, name in enumerate(self.class_names)
                if i in present]

    def class_table(self) -> list[dict[str, Any]]:
        """Per class: pixels (voxels; of the preview when strided), percent of the predicted area, the area (volume)
        in ``cell_unit`` and the mean of each of ``values``."""
        k = len(self.class_names)
        flat = self.classes.ravel().astype(np.int64)
        counts = np.bincount(flat, minlength=k)[:k]
        total = max(int(counts.sum()), 1)
        rows = [{"class": name, "pixels": int(counts[i]), "percent": round(100.0 * float(counts[i]) / total, 2)}
                for i, name in enumerate(self.class_names)]
        for name, value in self.values.items():
            for row, mean in zip(rows, label_means(flat, value.ravel(), k)):
                row[f"mean_{name}"] = mean
        if self.cell_size:
            for row in rows:
                row[self.cell_unit] = row["pixels"] * self.cell_size * self.stride**2
        return rows


def label_means(labels: np.ndarray, values: np.ndarray, n: int) -> list[float | None]:
    """Mean of the finite ``values`` under each label 0..n-1 (None where there are none); other labels ignored."""
    keep = (labels >= 0) & (labels < n) & np.isfinite(values)
    sums = np.bincount(labels[keep], weights=values[keep], minlength=n)[:n]
    counts = np.bincount(labels[keep], minlength=n)[:n]
    return [float(t / c) if c else None for t, c in zip(sums, counts)]



class Collector:
    """A :class:`~segsuite.core.contracts.Sink` that gathers an item's predictions into a :class:`Result`: the whole
    item, or the row blocks of a streaming item put back together (every ``stride``-th row and column for a preview)."""

    def __init__(self, job: Job, probabilities: bool = False, stride: int = 1, opened: Opened | None = None,
                 progress: Callable[[float], Any] | None = None, rows: int = 0) -> None:
        self.job, self.want_probabilities, self.stride, self.opened = job, probabilities, stride, opened
        self.progress, self.rows, self.rows_done = progress, rows, 0
        self.blocks: dict[int, list[tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]]] = {}
        self.instances: Instances | None = None
        self.cell: tuple[float, str] | None = None
        self.values: dict[str, np.ndarray] = {}

    def _describe(self) -> None:
        """What the opened item says about its grid (read once, while it is open)."""
        cell, values = getattr(self.opened, "cell_size", None), getattr(self.opened, "values", None)
        self.cell = cell() if cell is not None else None
        self.values = values() if values is not None and self.stride == 1 else {}

    def update(self, prediction: Prediction) -> None:
        if not self.blocks:
            self._describe()
        rows, cols = self._rows(prediction), self._cols(prediction)
        classes = prediction.classes[..., rows, :][..., cols].copy()
        valid = self._valid(prediction)
        if valid is not None:
            classes[~valid[..., rows, :][..., cols]] = self.job.model.meta.ignore_index
        border = None if prediction.border is None else prediction.border[..., rows, :][..., cols]
        proba = None
        if self.want_probabilities:
            proba = prediction.probabilities.float().cpu().numpy()[..., rows, :][..., cols]
        self.blocks.setdefault(prediction.source, []).append((prediction.row0, prediction.col0, classes, border, proba))
        self.instances = prediction.instances if self.stride == 1 else None
        self.rows_done += prediction.classes.shape[-2]
        if self.progress is not None and self.rows:
            self.progress(min(1.0, self.rows_done / self.rows))

    def _valid(self, prediction: Prediction) -> np.ndarray | None:
        """Where the input holds data: the reader's ``Opened.valid`` when it has one, else the computed windows."""
        valid = getattr(self.opened, "valid", None)
        return valid(prediction) if valid is not None else prediction.covered

    def _rows(self, prediction: Prediction) -> slice | np.ndarray:
        if self.stride == 1:
            return slice(None)
        height = prediction.classes.shape[-2]
        return np.flatnonzero((prediction.row0 + np.arange(height)) % self.stride == 0)

    def _cols(self, prediction: Prediction) -> slice | np.ndarray:
        if self.stride == 1:
            return slice(None)
        width = prediction.classes.shape[-1]
        return np.flatnonzero((prediction.col0 + np.arange(width)) % self.stride == 0)

    def close(self) -> Result:
        sources = [self._join(sorted(self.blocks[i], key=lambda b: (b[1], b[0]))) for i in sorted(self.blocks)]
        classes, border, proba = sources[0] if len(sources) == 1 else [_stack(s) for s in zip(*sources)]
        instances = self.instances
        if instances is None and self.job.instancer is not None and self.stride == 1:
            instances = self.job.instancer(classes, border)
        return self._result(classes, proba, instances)

    @staticmethod
    def _join(blocks: list) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Blocks sorted by (column, row): each column band's rows stacked, the bands side by side."""
        bands: dict[int, list] = {}
        for _, col0, *parts in blocks:
            bands.setdefault(col0, []).append(parts)
        joined = [[None if p[0] is None else np.concatenate(p, -2) for p in zip(*band)] for band in bands.values()]
        return tuple(None if p[0] is None else np.concatenate(p, -1) if len(p) > 1 else p[0]  # type: ignore[return-value]
                     for p in zip(*joined))

    def _result(self, classes: np.ndarray, proba: np.ndarray | None, instances: Instances | None) -> Result:
        meta = self.job.model.meta
        colors = np.asarray(meta.class_colors, np.uint8) if meta.class_colors else default_colors(meta.num_classes)
        table = [] if instances is None else self._instance_rows(instances)
        size, unit = self.cell or (None, "")
        return Result(classes, meta.class_names, colors, meta.ignore_index, proba,
                      None if instances is None else instances.ids, table, self.job.mode, self.stride, size, unit,
                      self.values)

    def _instance_rows(self, instances: Instances) -> list[dict[str, Any]]:
        """:func:`~segsuite.core.instances.measure_instances` plus the size in the cell unit and the mean of each value
        map."""
        rows = measure_instances(instances, self.job.model.meta.class_names)
        size, unit = self.cell or (None, "")
        ids = instances.ids.ravel().astype(np.int64)
        means = {name: label_means(ids, v.ravel(), instances.n + 1) for name, v in self.values.items()}
        for row in rows:
            if size:
                row[unit] = row.get("pixels", row.get("voxels", 0)) * size
            row.update({f"mean_{name}": m[row["id"]] for name, m in means.items()})
        return rows

    def abort(self) -> None:
        self.blocks.clear()


def _stack(parts: Sequence[np.ndarray | None]) -> np.ndarray | None:
    return None if parts[0] is None else np.stack(parts, -3)


@dataclass
class _TeeWriter:
    """The domain's writer, whose sinks also hand every prediction to a :class:`Collector` (one item only)."""

    writer: Writer
    collector: Collector

    def outputs(self, item, output, folder, job):
        return self.writer.outputs(item, output, folder, job)

    def run_outputs(self, items, output, folder, job):
        return self.writer.run_outputs(items, output, folder, job)

    def sink(self, item, opened, paths, job):
        self.collector.opened = opened
        return _TeeSink(self.writer.sink(item, opened, paths, job), self.collector)

    def finish(self, results, paths, job):
        return self.writer.finish(results, paths, job)


@dataclass
class _TeeSink:
    sink: Any
    collector: Collector

    def update(self, prediction: Prediction) -> None:
        self.sink.update(prediction)
        self.collector.update(prediction)

    def close(self) -> Any:
        return self.sink.close()  # the collector is closed once the run has committed

    def abort(self) -> None:
        self.sink.abort()
        self.collector.abort()


# ----------------------------------------------------------------------------------------------------------------
# Segmenter
# ----------------------------------------------------------------------------------------------------------------


def _is_files(x: Any) -> bool:
    """A path, or the files of one item (a list, or a mapping such as ``{water: w.nii.gz, fat: f.nii.gz}``)."""
    if isinstance(x, (str, os.PathLike, Mapping)):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(v, (str, os.PathLike)) for v in x)


def compose_predict(overrides: Sequence[str]) -> DictConfig:
    """``conf/predict.yaml`` with ``overrides``, composed as the CLI composes it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="predict", overrides=list(overrides))


class Segmenter:
    """A checkpoint with its domain's reader and writer, ready to predict arrays and files."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.reader: Reader = hydra.utils.instantiate(cfg.domain.reader)
        self.writer: Writer = hydra.utils.instantiate(cfg.domain.writer)
        self._jobs: dict[Mode, Job] = {Mode.SEMANTIC: load_job(cfg)}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | None = None, tta: bool = False,
                        amp: bool = False, overrides: Sequence[str] = ()) -> Segmenter:
        """The checkpoint ``path`` with its own domain's config (from its hyperparameters); ``overrides`` are the
        CLI's (e.g. ``domain.inference.batch_size=2``)."""
        domain = describe(path).get("domain")
        if not domain:
            raise ConfigError(f"checkpoint {path} does not name its domain; build the Segmenter from a config with "
                              "Segmenter(compose_predict([...]))")
        cfg = compose_predict([f"domain={domain}", f"checkpoint={Path(path)}", "task=semantic",
                               f"device={device or 'null'}", f"tta={tta}", f"amp={amp}", *overrides])
        return cls(cfg)

    @property
    def domain(self) -> str:
        return str(self.cfg.domain.name)

    @property
    def meta(self):
        """What the checkpoint knows about its data (:class:`~segsuite.core.contracts.DataMeta`)."""
        return self._jobs[Mode.SEMANTIC].model.meta

    def job(self, mode: str | Mode | None = None, overwrite: bool = False) -> Job:
        """The :class:`~segsuite.core.contracts.Job` for ``mode`` (once per mode; None: the domain's default task)."""
        mode = Mode.parse(mode if mode is not None else self.cfg.task)
        if mode not in self._jobs:
            cfg = self.cfg.copy()
            cfg.task = mode.value
            self._jobs[mode] = prepared(self.reader, load_job(cfg))
        return replace(self._jobs[mode], overwrite=overwrite)

    def predict(self, x: Any, mode: str | Mode | None = None, probabilities: bool = False) -> Result:
        """Predict one input: a file of the domain (a path, or the list of files of one item) or an array / tensor
        in the domain's layout (the reader's ``from_array``)."""
        job = self.job(mode)
        opened = self._open(x, job)
        collector = Collector(job, probabilities, opened=opened)
        try:
            for prediction in predict_item(opened, job):
                collector.update(prediction)
        finally:
            opened.close()
        return collector.close()

    def _open(self, x: Any, job: Job) -> Opened:
        if _is_files(x):
            item = self._one_item(x, job)
            self.reader.check(item, job)
            return self.reader.open(item, job)
        if not isinstance(self.reader, ArrayReader):
            raise ConfigError(f"the {self.domain} reader does not take arrays; pass a file path instead")
        array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asanyarray(x)  # masks kept
        return self.reader.from_array(array, job)

    def _one_item(self, path: str | os.PathLike, job: Job) -> Item:
        items = self.reader.find(path, job)
        if len(items) != 1:
            raise DataError(f"{path} holds {len(items)} inputs; predict() takes one (predict_file takes folders)")
        return items[0]

    def predict_file(self, input: Any, output: str | os.PathLike, mode: str | Mode | None = None,
                     overwrite: bool = False) -> list[Path]:
        """The CLI's ``predict``: ``input`` (file, folder...) into ``output`` in the domain's formats; returns the
        files written (all or none)."""
        return run_predict(self.reader, self.writer, self.job(mode, overwrite), input, output)

    def predict_file_with_preview(self, input: Any, output: str | os.PathLike, mode: str | Mode | None = None,
                                  max_pixels: int = 2**22, overwrite: bool = False,
                                  progress: Callable[[float], Any] | None = None) -> tuple[Result, list[Path]]:
        """:meth:`predict_file` for one input, also returning its :class:`Result` from the same run; a streaming
        item (a large raster) larger than ``max_pixels`` comes back as a preview of every ``stride``-th row and
        column, and ``progress`` hears the fraction of its rows done."""
        job = self.job(mode, overwrite)
        stride, rows = self._preview_plan(self._one_item(input, job), job, max_pixels)
        collector = Collector(job, stride=stride, progress=progress, rows=rows)
        files = run_predict(self.reader, _TeeWriter(self.writer, collector), job, input, output)
        return collector.close(), files

    def _preview_plan(self, item: Item, job: Job, max_pixels: int) -> tuple[int, int]:
        """``(stride, rows)`` of a streaming item's preview (``(1, 0)`` for whole items)."""
        self.reader.check(item, job)
        opened = self.reader.open(item, job)
        try:
            if not opened.streaming:
                return 1, 0
            pixels = max(int(np.prod(s.shape)) for s in opened.sources)
            rows = sum(int(s.shape[0]) for s in opened.sources)
        finally:
            opened.close()
        return max(1, int(np.ceil(np.sqrt(pixels / max_pixels)))), rows
