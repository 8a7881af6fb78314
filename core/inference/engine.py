"""Sliding-window inference that streams: tiles are read by a pool of reader threads (one file handle each) in
the file's own dtype, queued in order, normalised on the model's device, batched through the model, blended into a
strip buffer as tall as one tile, and finished rows are handed out as soon as no later tile can touch them. Each
tile carries its valid mask: nodata pixels get no weight, so the blended block says where the input was valid
without reading the file again.

Memory, besides the model and GDAL's block cache, does not grow with the image height (README, "Prediction
streams"): the merger's ``(K + 1) x tile_h x W`` float32 strip, up to 3 released blocks of at most 4 MiB, about
``2 x readers + 2 x batch_size`` tiles in the file's dtype (batches are filled in reused host arrays) and one
normalised float32 batch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from segsuite.core.errors import ConfigError
from segsuite.core.inference.blend import BLEND_MODES, blend_weights_nd
from segsuite.core.inference.merger import VolumeMerger
from segsuite.core.inference.windows import Box, Window, grid_for, window_size


@runtime_checkable
class Source(Protocol):
    """What the engine reads from: an image of ``shape`` (H, W) read window by window, or a volume of ``shape``
    (D, H, W) read box by box (:class:`~segsuite.core.inference.windows.Box`)."""

    shape: tuple[int, ...]

    def read(self, window: Window | Box) -> np.ndarray:
        """Model-ready input for one window, float32 (C, h, w) (a box: (C, d, h, w))."""

    def skip(self, window: Window | Box) -> bool:
        """True for windows with nothing to predict (all nodata): they are not computed."""


@runtime_checkable
class RawSource(Source, Protocol):
    """A source whose tiles travel in the file's dtype with their valid mask and are normalised on the device.

    ``load`` runs in one of several reader threads at once (a file-backed source keeps one handle per thread);
    ``normalizer(x, valid, out)`` makes a whole batch model-ready on the model's device: ``x`` ``(B, C, h, w)`` in the
    file's dtype, ``valid`` ``(B, h, w)`` (None when every pixel is valid), written into ``out`` (float32, x's shape,
    reused from batch to batch) and returned. Tiles with equal normalizers share batches.
    """

    normalizer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

    def load(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(data (C, h, w) in the file's dtype, valid (h, w) bool)``; an all-False mask skips the window."""


class ArraySource:
    """An in-memory image (C, H, W), or volume (C, D, H, W), as a :class:`Source`."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = np.asarray(image, dtype=np.float32)
        self.shape = self.image.shape[1:]

    def read(self, window: Window | Box) -> np.ndarray:
        if isinstance(window, Box):
            return self.image[(slice(None), *window.slices())]
        r, c, h, w = window
        return self.image[:, r : r + h, c : c + w]

    def skip(self, window: Window) -> bool:
        return False


class TilePredictor:
    """Runs a network on batches of tiles, with optional mixed precision and flip test-time augmentation.

    Args:
        model: maps (B, C, h, w) to logits (B, K, h, w).
        device: where to run; default CUDA if available.
        amp: autocast to bfloat16 for speed (CUDA; on the CPU it works too, where bfloat16 kernels exist).
        tta_flips: tensor dims to flip for TTA, e.g. ``[-1]`` (horizontal) or ``[-1, -2]``, each one pass; a tuple
            flips those dims together (``(-1, -3)``); outputs averaged.
        channels_last: run 2D networks in channels-last memory layout (the network's 4D weights are converted in
            place on the first 2D batch). oneDNN's and cuDNN's fastest convolutions use it: Unet-ResNet18 runs about
            1.4x faster on a CPU. Same results up to float rounding.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, amp: bool = False,
                 tta_flips: Sequence[int] = (), channels_last: bool = True) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.amp = amp
        self.tta_flips = list(tta_flips)
        self.channels_last = channels_last
        self._converted = False

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (and once, the network) in channels-last layout for 2D batches when asked; 3D batches as they are."""
        if not self.channels_last or x.dim() != 4:
            return x
        if not self._converted:
            self.model.to(memory_format=torch.channels_last)
            self._converted = True
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> float32 logits (B, K, h, w) on ``self.device``."""
        x = self._layout(tiles.to(self.device, non_blocking=True))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(x).float()
            if not self.tta_flips:
                return out
            for dim in self.tta_flips:
                out = out + self.model(x.flip(dim)).float().flip(dim)
        return out.div_(1 + len(self.tta_flips))


@dataclass(frozen=True)
class InferenceOptions:
    """How the engine tiles an item, checked once for every domain (a ConfigError names the bad value).

    Args:
        tile: window size ``[h, w]`` in model-input pixels (``[d, h, w]`` for 3D items), or None for whole items
            (one window each).
        overlap: pixels shared by neighbouring windows, one per axis of the tile; each must be >= 0 and smaller
            than the tile.
        batch_size: windows per forward pass (>= 1).
        blend: how overlapping windows are weighted: gaussian, cosine or constant.
        readers: threads reading tiles (each with its own file handle); None: :func:`default_readers`.
    """

    tile: tuple[int, ...] | None = (512, 512)
    overlap: tuple[int, ...] = (64, 64)
    batch_size: int = 8
    blend: str = "gaussian"
    readers: int | None = None

    def __post_init__(self) -> None:
        tile = None if self.tile is None else _pair("tile", self.tile, minimum=1)
        overlap = _pair("overlap", self.overlap, minimum=0)
        if tile is not None and len(overlap) != len(tile):
            raise ConfigError(f"overlap={list(overlap)} must have one value per axis of tile={list(tile)}")
        if tile is not None and not all(o < t for o, t in zip(overlap, tile)):
            raise ConfigError(f"overlap={list(overlap)} must be smaller than tile={list(tile)} along each axis")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r}: expected a whole number >= 1")
        if self.readers is not None and (isinstance(self.readers, bool) or not isinstance(self.readers, int)
                                         or self.readers < 1):
            raise ConfigError(f"readers={self.readers!r}: expected a whole number >= 1 (reader threads) or null")
        if self.blend not in BLEND_MODES:
            raise ConfigError(f"blend={self.blend!r}: choose one of {', '.join(BLEND_MODES)}")
        object.__setattr__(self, "tile", tile)
        object.__setattr__(self, "overlap", overlap)

    def grid(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(tile, overlap) for an item of ``shape``: whole items get one window."""
        if self.tile is None:
            return tuple(int(n) for n in shape), (0,) * len(shape)
        return self.tile, self.overlap


def _pair(name: str, value: Any, minimum: int) -> tuple[int, ...]:
    """``[h, w]`` for images, or ``[d, h, w]`` for volumes, checked (the 2D message names the 2D form)."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) not in (2, 3) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                                          for v in pair):
        raise ConfigError(f"{name}={value!r}: expected [h, w], two whole numbers >= {minimum} ([d, h, w] for "
                          f"volumes)")
    return tuple(int(v) for v in pair)


class Merger(Protocol):
    """Accumulates the window outputs of one item (MONAI's ``Merger``: ``aggregate`` then finalise), handing out
    finished rows as soon as no later window can touch them."""

    def aggregate(self, values: torch.Tensor, window: Window, weight: torch.Tensor) -> None:
        """Add ``values`` (K, h, w) with ``weight`` (h, w) at ``window``."""

    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """The next rows of [first held, ``upto``): (first row, blended (K, n, W), covered (n, W)), or None when there
        are none; called until None (a merger may hand out a long run of rows in several blocks)."""


class StripMerger:
    """Weighted accumulation for one image, holding ``buffer_rows`` rows in a preallocated ring buffer that is
    updated in place (no allocation per strip). Windows come in row-major order; :meth:`release` with a window's
    first row before aggregating it. Memory: (K + 1) x buffer_rows x width floats.

    A released block holds at most :attr:`BLOCK_VALUES` floats: on the CPU, blocks over glibc's 32 MiB mmap threshold
    would be fresh pages (a page fault per 4 KiB) at every allocation, costing more than the blending itself; 4 MiB
    rather than 8 took 30 MiB off the peak at 8192 px wide (fewer and smaller blocks held by the writer, less heap
    fragmentation) at no measurable cost in speed.
    """

    BLOCK_VALUES = 1 << 20  # 4 MiB of float32

    def __init__(self, height: int, width: int, channels: int, buffer_rows: int, device: torch.device) -> None:
        self.height, self.width, self.rows = height, width, buffer_rows
        self.block_rows = max(1, self.BLOCK_VALUES // (channels * width))
        self.top = 0  # first row still held
        self.acc = torch.zeros(channels, buffer_rows, width, device=device)  # (K, rows, W), row r at r % rows
        self.wsum = torch.zeros(buffer_rows, width, device=device)  # (rows, W)

    def _spans(self, row: int, n: int) -> list[tuple[int, int, int]]:
        """(ring start, ring end, offset into the n rows) of rows [row, row + n), at most two pieces."""
        start = row % self.rows
        first = min(n, self.rows - start)
        spans = [(start, start + first, 0)]
        if first < n:
            spans.append((0, n - first, first))
        return spans

    def aggregate(self, values: torch.Tensor, window: Window, weight: torch.Tensor) -> None:
        r, c, h, w = window
        for a, b, off in self._spans(r, h):
            self.acc[:, a:b, c : c + w].addcmul_(values[:, off : off + b - a], weight[off : off + b - a])
            self.wsum[a:b, c : c + w] += weight[off : off + b - a]

    add = aggregate  # the earlier name

    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        n = min(upto, self.height, self.top + self.block_rows) - self.top
        if n <= 0:
            return None
        parts = []
        for a, b, _ in self._spans(self.top, n):  # at most two pieces (the block wraps round the ring)
            covered = self.wsum[a:b] > 0
            parts.append((self.acc[:, a:b] / self.wsum[a:b].clamp_min_(1e-12), covered))  # (K, m, W), (m, W)
            self.acc[:, a:b].zero_()
            self.wsum[a:b].zero_()
        self.top += n
        if len(parts) == 1:
            return self.top - n, *parts[0]
        return self.top - n, torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts])


_END = object()


class _Stopped(Exception):
    """The consumer stopped listening."""


def default_readers(device: torch.device | str) -> int:
    """Reader threads when not configured: one when the model runs on the CPU, else up to 4 (at most the cores).

    Each thread decodes the file's blocks through its own handle and cache, and neighbouring windows share blocks,
    so a second thread decodes many blocks again: on the CPU it takes cores from the model (measured on 2 cores: the
    no-compute pipeline ran 1.07 s with two readers, 0.78 s with one). Beside a GPU the cores are otherwise idle."""
    if torch.device(device).type == "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _load(source: Source, window: Window) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One window in a reader thread: ``(data, valid)`` of a :class:`RawSource`; model-ready float32 and None for a
    plain :class:`Source`; ``(None, None)`` for a window to skip."""
    if hasattr(source, "load"):  # a RawSource (an attribute test: isinstance on a Protocol is slow per window)
        data, valid = source.load(window)
        return (data, valid) if valid.any() else (None, None)
    if source.skip(window):
        return None, None
    return np.ascontiguousarray(source.read(window), dtype=np.float32), None


class _HostBuffers:
    """Reused host arrays for batches of tiles (pinned on CUDA): a batch is filled tile by tile as reads complete and
    its arrays come back (:meth:`_Batch.release`) once the batch is on the device or through the model, so batches
    cost no allocation (fresh pages fault in one by one on a CPU; pinned allocation is slow on CUDA) and no
    stacking copy."""

    def __init__(self, device: torch.device) -> None:
        self.pinned = device.type == "cuda"
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        with self.lock:
            free = self.free.get((shape, dtype))
            if free:
                return free.pop()
        return torch.empty(shape, dtype=dtype, pin_memory=self.pinned)

    def give(self, array: torch.Tensor) -> None:
        with self.lock:
            self.free.setdefault((tuple(array.shape), array.dtype), []).append(array)


class _Batch:
    """Tiles stacked for the model, with their valid masks (None when the source has none) and the normalizer that
    makes them model-ready on the device. Tiles are copied into reused host arrays as they arrive (:meth:`add`); on
    CUDA those are pinned and the batch is copied on a side stream by the reading thread, so the copy overlaps the
    previous batch's forward pass."""

    def __init__(self, pool: _HostBuffers, size: int, tile: np.ndarray, masked: bool, normalizer: Any) -> None:
        self.pool, self.normalizer, self.event, self.n = pool, normalizer, None, 0
        dtype = torch.from_numpy(tile[:0]).dtype
        self.host = [pool.take((size, *tile.shape), dtype)] + ([pool.take((size, *tile.shape[1:]), torch.bool)]
                                                               if masked else [])

    def add(self, tile: np.ndarray, valid: np.ndarray | None) -> None:
        self.host[0][self.n].numpy()[...] = tile
        if valid is not None:
            self.host[1][self.n].numpy()[...] = valid
        self.n += 1

    def send(self, device: torch.device, stream) -> _Batch:
        """The filled tiles on ``device`` (on CUDA, copied on ``stream``); returns self."""
        host = [h[: self.n] for h in self.host]
        if device.type != "cuda":
            self.tensors = host
            return self
        with torch.cuda.stream(stream):
            self.tensors = [h.to(device, non_blocking=True) for h in host]
            self.event = torch.cuda.Event()
            self.event.record(stream)
        return self

    def release(self, tiles_only: bool = False) -> None:
        """Give the host arrays back for later batches, once the copy to the device is done or, on the CPU, once
        nothing reads them: the tiles after normalising (``tiles_only``), the masks after blending."""
        if self.event is not None:
            self.event.synchronize()
        for i in range(1 if tiles_only else len(self.host)):
            if self.host[i] is not None:
                self.pool.give(self.host[i])
                self.host[i] = None

    def ready(self, buffers: dict, layout: torch.memory_format = torch.contiguous_format
              ) -> tuple[torch.Tensor, list[torch.Tensor | None] | None]:
        """``(model-ready float32 batch, each tile's valid mask (None: all valid, :func:`_partly_valid`) or None for
        sources without masks)``, safe to use on the current stream. The
        normalised batch goes into ``buffers`` (float32 tensors per shape, reused: the next batch is normalised only
        after this one's forward pass was issued, in the same stream), in ``layout`` for 2D batches (the predictor's
        channels-last). Tiles are normalised one by one in the file's layout and copied across: per-band arithmetic
        broadcast over channels-last's innermost axis runs about 2x slower on a CPU than that."""
        if self.event is not None:
            current = torch.cuda.current_stream(self.tensors[0].device)
            current.wait_event(self.event)
            for t in self.tensors:
                t.record_stream(current)
        x, valid = self.tensors[0], (self.tensors[1] if len(self.tensors) > 1 else None)
        masks = _partly_valid(valid) if valid is not None else None
        if masks is not None and all(m is None for m in masks):
            valid = None  # the normalizer need not fill nodata
        if self.normalizer is None:
            return x.float(), masks
        if x.dim() != 4 or layout == torch.contiguous_format:
            out = self.normalizer(x, valid, _buffer(buffers, x.shape, x.device))
        else:
            out, one = _buffer(buffers, x.shape, x.device, layout), _buffer(buffers, (1, *x.shape[1:]), x.device)
            for i in range(len(x)):  # tile by tile through a small buffer in the file's layout
                out[i : i + 1].copy_(self.normalizer(x[i : i + 1], None if valid is None else valid[i : i + 1], one))
        self.release(tiles_only=True)  # free for the batch after next while this one runs
        return out, masks


def _buffer(buffers: dict, shape: Sequence[int], device: torch.device,
            layout: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A reused float32 tensor of ``shape`` in ``layout``."""
    key = (tuple(shape), device, layout)
    if key not in buffers:
        buffers[key] = torch.empty(tuple(shape), dtype=torch.float32, device=device, memory_format=layout)
    return buffers[key]


def _windows(sources: Sequence[Source], tile, overlap) -> Iterator[tuple[int, Source, Window | None]]:
    """``(source index, source, window)`` in order; the window is None at each source's end."""
    for index, source in enumerate(sources):
        for window in grid_for(source.shape, tile, overlap):
            yield index, source, window
        yield index, source, None


def _produce(sources: Sequence[Source], tile, overlap, batch_size: int, readers: int, device: torch.device,
             out: queue.Queue, stop: threading.Event) -> None:
    """Background thread: read tiles with ``readers`` threads, in order, and put batches ``(items, _Batch or
    None)`` on ``out``. ``items`` lists ``(source_index, source, window, computed)``; a window is None at a source's
    end. Reads run ahead of the batch being filled by at most ``2 x readers`` windows."""
    def put(value) -> None:
        while not stop.is_set():  # give up when the consumer has gone
            try:
                return out.put(value, timeout=0.1)
            except queue.Full:
                continue
        raise _Stopped

    pool = ThreadPoolExecutor(readers, thread_name_prefix="segsuite-read", initializer=torch.set_num_threads,
                              initargs=(1,))  # in those threads only (one_thread)
    try:
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        buffers = _HostBuffers(device)
        items: list = []
        batch: _Batch | None = None
        key: tuple | None = None  # what the tiles of the batch being filled share: shape, dtype, normalizer

        def flush() -> None:
            nonlocal batch
            put((list(items), batch.send(device, stream) if batch is not None else None))
            items.clear()
            batch = None

        def take(entry, future) -> None:
            nonlocal key, batch
            index, source, window = entry
            if window is None:
                items.append((index, source, None, False))
                return
            data, valid = future.result()
            if data is None:
                items.append((index, source, window, False))
                return
            normalizer = source.normalizer if valid is not None else None
            tile_key = (data.shape, data.dtype, normalizer)
            if batch is not None and tile_key != key:
                flush()
            key = tile_key
            if batch is None:
                batch = _Batch(buffers, batch_size, data, valid is not None, normalizer)
            items.append((index, source, window, True))
            batch.add(data, valid)
            if batch.n == batch_size:
                flush()

        pending: deque = deque()
        for entry in _windows(sources, tile, overlap):
            future = pool.submit(_load, entry[1], entry[2]) if entry[2] is not None else None
            pending.append((entry, future))
            while len(pending) > 2 * readers:
                take(*pending.popleft())
            if stop.is_set():
                raise _Stopped
        while pending:
            take(*pending.popleft())
        flush()
        put(_END)
    except _Stopped:
        pass
    except BaseException as err:  # re-raised in the consuming thread (unless it has gone: never block on it)
        with contextlib.suppress(_Stopped):
            put(err)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def sliding_window(
    predictor: TilePredictor,
    sources: Iterable[Source],
    out_channels: int,
    tile: tuple[int, int] = (512, 512),
    overlap: tuple[int, int] = (64, 64),
    batch_size: int = 8,
    blend: str = "gaussian",
    progress: bool | str | tqdm = False,
    merger: Callable[..., Merger] = StripMerger,
    readers: int | None = None,
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Predict every source tile by tile and yield finished row blocks as they complete. A volume (a source of
    shape (D, H, W), ``tile`` [d, h, w]) is tiled by boxes and blended whole (:class:`.merger.VolumeMerger`): it comes
    out once, as one block from row 0.

    A source that fits in one window skips the merger: its window's logits are the result (no blending, no copy).
    ``merger(height, width, channels, buffer_rows, device)`` makes the merger of a larger source. ``readers``: reader
    threads (default :func:`default_readers`).

    Yields:
        ``(source_index, first_row, logits (K, n, W), covered (n, W))`` on the predictor's device; rows of
        each source come in order and together cover it; ``covered`` is False where every tile was skipped and,
        for a :class:`RawSource`, where the input is not valid (logits there are 0).
    """
    options = InferenceOptions(tuple(tile), tuple(overlap), batch_size, blend)  # ConfigError for bad options
    tile, overlap = options.tile, options.overlap
    sources = list(sources)
    total = sum(len(grid_for(s.shape, tile, overlap)) for s in sources) if progress is not False else None
    if isinstance(progress, tqdm):  # the caller's bar (one bar for a whole run): grow its total, leave it open
        bar, own_bar = progress, False
        bar.total = (bar.total or 0) + total
        bar.refresh()
    else:
        bar, own_bar = tqdm(total=total, desc=progress if isinstance(progress, str) else "tiles", unit="tile",
                            disable=not progress), True
    batches: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, daemon=True, args=(
        sources, tile, overlap, batch_size, readers or default_readers(predictor.device), predictor.device, batches,
        stop))
    producer.start()
    mergers: dict[int, Merger] = {}
    buffers: dict = {}
    layout = torch.channels_last if getattr(predictor, "channels_last", False) else torch.contiguous_format
    weights: dict[tuple[int, int], torch.Tensor] = {}
    device = predictor.device
    light = one_thread() if device.type == "cpu" else contextlib.nullcontext()  # all but the forward pass
    trim = heap_trimmer() if device.type == "cpu" else None
    try:
        while (batch := batches.get()) is not _END:
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
            for index, source, window, computed in items:
                if window is None:
                    if index in mergers:
                        yield from _released(index, mergers.pop(index), source.shape[0], light)
                    continue
                bar.update(1)
                ok = next(valid) if computed and valid is not None else None  # (h, w) bool
                if window_size(window) == tuple(source.shape):  # one window covers the source: nothing to blend
                    yield (index, 0, *_whole(next(logits) if computed else None, ok, out_channels, source.shape,
                                             device, x))
                    continue
                if index not in mergers and len(source.shape) == 3:  # volumes: accumulated whole
                    mergers[index] = VolumeMerger(source.shape, out_channels, device)
                if index not in mergers:
                    height, width = source.shape
                    mergers[index] = merger(height, width, out_channels, min(tile[0], height), device)
                yield from _released(index, mergers[index], window.row, light)
                if computed:
                    shape = window_size(window)
                    if shape not in weights:
                        weights[shape] = torch.from_numpy(blend_weights_nd(shape, blend)).to(device)
                    with light:
                        weight = weights[shape] if ok is None else weights[shape] * ok
                        mergers[index].aggregate(next(logits), window, weight)
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


def _partly_valid(valid: torch.Tensor) -> list[torch.Tensor | None]:
    """Each tile's valid mask, or None where the whole tile is valid (its weights need no masking). On a GPU every
    mask is kept: asking which are full would wait for the device."""
    if valid.device.type != "cpu":
        return list(valid)
    return [None if full else mask for mask, full in zip(valid, valid.flatten(1).all(1).tolist())]


def _released(index: int, merger: Merger, upto: int, light: contextlib.AbstractContextManager
              ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """The merger's finished blocks up to row ``upto``, one at a time (the writer's queue holds them back: never
    the whole run of rows at once), each made under ``light``."""
    while True:
        with light:
            done = merger.release(upto)
        if done is None:
            return
        yield (index, *done)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_trimmer(limit: int = 64 << 20) -> Callable[[], Any] | None:
    """A function handing glibc's free heap memory back to the system (``malloc_trim``) once it exceeds ``limit``
    bytes (``mallinfo2().fordblks``); None where the C library is not glibc 2.33 or later.

    glibc keeps freed heap memory for reuse, and a network's activations of many sizes (under its 32 MiB mmap
    threshold) freed between our row blocks leave it ever more fragmented: on the CPU the peak grew with the number
    of batches, 379 MiB added at 8192^2 against 288 MiB at 2048 x 8192 for Unet-ResNet18, and 245 MiB for both with
    every large allocation mmapped. Trimming before a forward pass once more than ``limit`` is free keeps it flat
    (323 and 305 MiB); trimming before every batch cost the light pipeline 8 % (its blocks fault back in), and a 32
    MiB limit trimmed on most batches of the no-compute model, whose blocks and tiles alone churn that much. PyTorch
    has no CPU caching allocator to bound this; jemalloc or tcmalloc, preloaded, would do it too."""
    try:
        libc = ctypes.CDLL(None)
        trim, info = libc.malloc_trim, libc.mallinfo2
    except (OSError, AttributeError):
        return None
    info.restype = _MallInfo2

    def trim_when_large() -> None:
        if info().fordblks > limit:
            trim(0)

    return trim_when_large


class one_thread(contextlib.ContextDecorator):
    """Torch ops inside run on one intra-op thread, in the calling thread only (torch's thread count is per thread).

    On a CPU the pipeline's threads (reader, writer) share the cores with the network's intra-op pool: the light,
    memory-bound work around the forward pass (normalising, blending, the argmax) loses more waiting for a pool
    thread that another thread holds than it gains from a second core. Measured on 2 cores with a no-compute model:
    0.53 of bare reads with the pool, 0.58-0.61 with this (0.70-0.74 with the forward pass on one thread too, which
    would halve a real network's speed). Reusable; not re-entrant."""

    def __enter__(self) -> one_thread:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.before)


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
