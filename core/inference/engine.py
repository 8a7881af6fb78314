"""Sliding-window inference that streams: tiles are read by a pool of reader threads (one file handle each) in
the file's own dtype, queued in order (:mod:`.feed`), normalised on the model's device (:mod:`.batch`), batched
through the model (:mod:`.predictor`), blended into a strip buffer as tall as one tile (:mod:`.merger`), and
finished rows are handed out as soon as no later tile can touch them. A wide image goes through in column bands
(``options.band``, :func:`.windows.grid_bands`), each band's windows through its own strip, so blocks are rectangles.
Each tile carries its valid mask: nodata pixels get no weight, so the blended block says where the input was valid
without reading the file again.

Memory, besides the model and GDAL's block cache, grows with neither the image height nor, with bands, its width
(README, "Prediction streams"): the merger's ``(K + 1) x tile_h x B`` float32 strip (B the width, or the band's
merger width), up to 3 released blocks of at most 4 MiB, about
``2 x readers + 2 x batch_size`` tiles in the file's dtype (batches are filled in reused host arrays) and one
normalised float32 batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from segsuite.core.inference.blend import blend_weights_nd
from segsuite.core.inference.feed import END, produce
from segsuite.core.inference.memory import heap_trimmer, one_thread
from segsuite.core.inference.merger import Merger, make_merger
from segsuite.core.inference.options import InferenceOptions, default_readers
from segsuite.core.inference.predictor import TilePredictor
from segsuite.core.inference.sources import ArraySource, Source
from segsuite.core.inference.windows import grid_bands, grid_for, window_size
from segsuite.core.workers import settle_threads

_PLAIN = ((512, 512), (64, 64), 8, "gaussian", None)  # sliding_window's keyword defaults


class Block(NamedTuple):
    """A finished rectangle of one source: rows ``[row0, row0 + n)`` and columns ``[col0, col0 + w)`` of it.

    Shape:
        logits: (K, n, w) on the predictor's device (a volume: (K, D, H, W) from row 0); covered: (n, w) bool,
        False where every tile was skipped and, for a :class:`RawSource`, where the input is not valid.
    """

    source: int
    row0: int
    col0: int
    logits: torch.Tensor
    covered: torch.Tensor


class _Part(NamedTuple):
    """What one merger blends: a source, or a column band of it (:class:`.windows.Band`)."""

    index: int
    col0: int  # first output column
    width: int  # output columns (a volume: its last axis, uncropped)
    left: int  # the merger's first column in the source
    shape: tuple[int, ...]  # the merger's shape
    windows: list


def _parts(sources: Sequence[Source], options: InferenceOptions, tile, overlap, channels: int) -> list[_Part]:
    """Every source's parts: column bands of a wide 2D image (``options.band``), else the whole source."""
    parts = []
    for i, s in enumerate(sources):
        if len(s.shape) != 2:
            parts.append(_Part(i, 0, s.shape[-1], 0, tuple(s.shape), grid_for(s.shape, tile, overlap)))
            continue
        band = options.band_width(s.shape, channels, tile[0])
        for b in grid_bands(*s.shape, tuple(tile), tuple(overlap), band):
            parts.append(_Part(i, b.col0, b.col1 - b.col0, b.left, (s.shape[0], b.right - b.left), b.windows))
    return parts


def sliding_blocks(predictor: TilePredictor, sources: Iterable[Source], out_channels: int, options: InferenceOptions,
                   progress: bool | str | tqdm = False, merger: Callable[..., Merger] = make_merger,
                   ) -> Iterator[Block]:
    """Predict every source tile by tile and yield finished rectangles (:class:`Block`) as they complete. A volume
    (a source of shape (D, H, W), ``tile`` [d, h, w]) is tiled by boxes and blended whole
    (:class:`.merger.VolumeMerger`): it comes out once, as one block from row 0.

    ``options`` (:class:`InferenceOptions`) says how to tile; a ``tile`` of None gives every source one window as
    large as the largest source. A 2D image wider than ``options.band`` goes through in column bands, left to
    right, each top to bottom (:func:`.windows.grid_bands`): blocks of a band tile its columns ``[col0, col0 + w)``.
    A part that fits in one window skips the merger: its window's logits are the result (no blending, no copy).
    ``merger(shape, channels, buffer_rows, device)`` makes the merger of a larger part (default
    :func:`.merger.make_merger`: strips for images, whole volumes).
    """
    sources = list(sources)
    tile, overlap = options.grid(tuple(max(n) for n in zip(*(s.shape for s in sources))))  # whole: the largest
    parts = _parts(sources, options, tile, overlap, out_channels)
    total = sum(len(p.windows) for p in parts) if progress is not False else None
    if isinstance(progress, tqdm):  # the caller's bar (one bar for a whole run): grow its total, leave it open
        bar, own_bar = progress, False
        bar.total = (bar.total or 0) + total
        bar.refresh()
    else:
        bar, own_bar = tqdm(total=total, desc=progress if isinstance(progress, str) else "tiles", unit="tile",
                            disable=not progress), True
    batches: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    producer = threading.Thread(target=produce, daemon=True, args=(
        [(k, sources[p.index], p.windows) for k, p in enumerate(parts)], options.batch_size,
        options.readers or default_readers(predictor.device), predictor.device, batches, stop))
    settle_threads()  # the forward pass's count, before the readers set theirs
    producer.start()
    mergers: dict[int, Merger] = {}
    buffers: dict = {}
    layout = torch.channels_last if getattr(predictor, "channels_last", False) else torch.contiguous_format
    weights: dict[tuple[int, int], torch.Tensor] = {}
    device = predictor.device
    light = one_thread() if device.type == "cpu" else contextlib.nullcontext()  # all but the forward pass
    # Where the user keeps glibc's own thresholds (keep_heap did not apply), the heap is offered back when a merger
    # blends: its released blocks, held by the writer across forward passes, fragment the heap the activations leave
    # (heap_trimmer). Parts of one window each (whole road frames) make no blocks; their next forward reuses that
    # free heap as it is, and trimming it made every forward fault it back in: 3-4 % of the CPU time of 1024x2048
    # frames. With the heap kept (the default) nothing is trimmed.
    blends = any(len(p.windows) > 1 for p in parts)
    trim = heap_trimmer() if device.type == "cpu" and blends else None
    try:
        while (batch := batches.get()) is not END:
            if isinstance(batch, BaseException):
                raise batch
            items, tiles = batch
            logits, valid, x = iter(()), None, None
            if tiles is not None:
                with light:
                    x, masks = tiles.ready(buffers, layout)
                if trim is not None:
                    trim()
                logits = iter(predictor(x))
                valid = iter(masks) if masks is not None else None
            for key, _, window, computed in items:
                part = parts[key]
                if window is None:
                    if key in mergers:
                        yield from _released(part, mergers.pop(key), part.shape[0], light)
                    continue
                bar.update(1)
                ok = next(valid) if computed and valid is not None else None  # (h, w) bool
                if window_size(window) == part.shape:  # one window covers the part: nothing to blend
                    yield _crop(part, 0, *_whole(next(logits) if computed else None, ok, out_channels, part.shape,
                                                 device, x))
                    continue
                if key not in mergers:  # strips for images, volumes accumulated whole
                    mergers[key] = merger(part.shape, out_channels, min(tile[0], part.shape[0]), device)
                yield from _released(part, mergers[key], window.row, light)
                if computed:
                    shape = window_size(window)
                    if shape not in weights:
                        weights[shape] = torch.from_numpy(blend_weights_nd(shape, options.blend)).to(device)
                    with light:
                        weight = weights[shape] if ok is None else weights[shape] * ok
                        local = window._replace(col=window.col - part.left) if part.left else window
                        mergers[key].aggregate(next(logits), local, weight)
            if tiles is not None:
                tiles.release()
    finally:
        # Wait for the producer (it stops at its next tile or hand-over): a daemon thread still inside a torch op
        # when the interpreter exits (Ctrl-C, an error) is ended by pthread_exit through C++ frames, and the
        # process aborts with "terminate called without an active exception" (SIGABRT) instead of exiting.
        stop.set()
        producer.join()
        if own_bar:
            bar.close()



def sliding_window(
    predictor: TilePredictor,
    sources: Iterable[Source],
    out_channels: int,
    tile: Sequence[int] | None = (512, 512),
    overlap: Sequence[int] = (64, 64),
    batch_size: int = 8,
    blend: str = "gaussian",
    progress: bool | str | tqdm = False,
    merger: Callable[..., Merger] = make_merger,
    readers: int | None = None,
    options: InferenceOptions | None = None,
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """:func:`sliding_blocks` in full-width row blocks (``options.band`` is ignored here).

    ``options`` (:class:`InferenceOptions`, checked where it was made) says how to tile; without it, ``tile``,
    ``overlap``, ``batch_size``, ``blend`` and ``readers`` (reader threads, default :func:`default_readers`) are
    checked into one here.

    Yields:
        ``(source_index, first_row, logits (K, n, W), covered (n, W))`` on the predictor's device; rows of
        each source come in order and together cover it.
    """
    if options is None:  # ConfigError for bad options
        options = InferenceOptions(None if tile is None else tuple(tile), tuple(overlap), batch_size, blend, readers)
    elif (tile, overlap, batch_size, blend, readers) != _PLAIN:
        raise TypeError("sliding_window: give options or tile/overlap/batch_size/blend/readers, not both")
    full = options if options.band is None else dataclasses.replace(options, band=None)
    for block in sliding_blocks(predictor, sources, out_channels, full, progress, merger):
        yield block.source, block.row0, block.logits, block.covered


def _crop(part: _Part, row0: int, logits: torch.Tensor, covered: torch.Tensor) -> Block:
    """The part's output columns of a block its merger released."""
    start = part.col0 - part.left
    if len(part.shape) == 2 and (start or part.width != part.shape[1]):
        logits, covered = logits[:, :, start : start + part.width], covered[:, start : start + part.width]
    return Block(part.index, row0, part.col0, logits, covered)


def _released(part: _Part, merger: Merger, upto: int, light: contextlib.AbstractContextManager) -> Iterator[Block]:
    """The merger's finished blocks up to row ``upto``, one at a time (the writer's queue holds them back: never
    the whole run of rows at once), each made under ``light``."""
    while True:
        with light:
            done = merger.release(upto)
        if done is None:
            return
        yield _crop(part, *done)


def _whole(values: torch.Tensor | None, valid: torch.Tensor | None, channels: int, shape: Sequence[int],
           device: torch.device, inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, covered) of a source covered by one window: its logits, 0 where the input is not valid."""
    if values is None:
        return torch.zeros(channels, *shape, device=device), torch.zeros(tuple(shape), dtype=torch.bool,
                                                                         device=device)
    if valid is None:
        if inputs is not None and values.untyped_storage().data_ptr() == inputs.untyped_storage().data_ptr():
            values = values.clone()  # a model that hands back its input: that buffer is refilled by the next batch
        return values, torch.ones(tuple(shape), dtype=torch.bool, device=device)
    return values.masked_fill(~valid, 0.0), valid.clone()  # the mask's buffer is reused too


def predict_array(predictor: TilePredictor, image: np.ndarray, out_channels: int, **kwargs) -> torch.Tensor:
    """Whole-image convenience: (C, H, W) array -> blended logits (K, H, W) on the predictor's device."""
    blocks = [block for _, _, block, _ in sliding_window(predictor, [ArraySource(image)], out_channels, **kwargs)]
    return torch.cat(blocks, dim=1)
