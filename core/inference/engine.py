"""Sliding-window inference that streams: tiles are read in a background thread, batched through the
model, blended into a strip buffer as tall as one tile, and finished rows are handed out as soon as no
later tile can touch them. Peak memory is bounded by tile size x image width, not by image area.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from core.inference.blend import blend_weights
from core.inference.windows import Window, grid_windows


@runtime_checkable
class Source(Protocol):
    """What the engine reads from: an image of ``shape`` (H, W) read window by window."""

    shape: tuple[int, int]

    def read(self, window: Window) -> np.ndarray:
        """Model-ready input for one window, float32 (C, h, w)."""

    def skip(self, window: Window) -> bool:
        """True for windows with nothing to predict (all nodata): they are not computed."""


class ArraySource:
    """An in-memory image (C, H, W) as a :class:`Source`."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = np.asarray(image, dtype=np.float32)
        self.shape = self.image.shape[-2:]

    def read(self, window: Window) -> np.ndarray:
        r, c, h, w = window
        return self.image[:, r : r + h, c : c + w]

    def skip(self, window: Window) -> bool:
        return False


class TilePredictor:
    """Runs a network on batches of tiles, with optional mixed precision and flip test-time augmentation.

    Args:
        model: maps (B, C, h, w) to logits (B, K, h, w).
        device: where to run; default CUDA if available.
        amp: autocast to bfloat16 (CUDA) for speed.
        tta_flips: tensor dims to flip for TTA, e.g. ``[-1]`` (horizontal) or ``[-1, -2]``; outputs averaged.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, amp: bool = False,
                 tta_flips: Sequence[int] = ()) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.amp = amp
        self.tta_flips = list(tta_flips)

    @torch.inference_mode()
    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> float32 logits (B, K, h, w) on ``self.device``."""
        x = tiles.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(x).float()
            for dim in self.tta_flips:
                out = out + self.model(x.flip(dim)).float().flip(dim)
        return out / (1 + len(self.tta_flips))


class StripMerger:
    """Weighted accumulation of tile outputs for one image, holding only ``buffer_rows`` rows at a time.

    Windows must be added in row-major order; call :meth:`release` with a window's row before adding it.
    """

    def __init__(self, height: int, width: int, channels: int, buffer_rows: int, device: torch.device) -> None:
        self.height, self.width = height, width
        self.top = 0  # first row still held
        self.acc = torch.zeros(channels, buffer_rows, width, device=device)  # (K, rows, W)
        self.wsum = torch.zeros(buffer_rows, width, device=device)  # (rows, W)

    def add(self, window: Window, values: torch.Tensor, weight: torch.Tensor) -> None:
        """Accumulate ``values`` (K, h, w) with ``weight`` (h, w) at ``window``."""
        r, c, h, w = window
        r -= self.top
        self.acc[:, r : r + h, c : c + w] += values * weight
        self.wsum[r : r + h, c : c + w] += weight

    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """Hand out rows [top, upto): (first row, blended (K, n, W), covered (n, W) bool), or None."""
        n = min(upto, self.height) - self.top
        if n <= 0:
            return None
        wsum = self.wsum[:n]
        block = self.acc[:, :n] / wsum.clamp_min(1e-12)
        out = (self.top, block, wsum > 0)
        if n == self.acc.shape[1]:  # the whole buffer is done: reuse it
            self.acc.zero_()
            self.wsum.zero_()
        else:
            self.acc = torch.cat([self.acc[:, n:], torch.zeros_like(self.acc[:, :n])], dim=1)
            self.wsum = torch.cat([self.wsum[n:], torch.zeros_like(wsum)], dim=0)
        self.top += n
        return out


_END = object()


class _Stopped(Exception):
    """The consumer stopped listening."""


class _Batch:
    """Tiles stacked for the model. On CUDA they are stacked into pinned memory and copied to the device on a
    side stream by the reading thread, so the copy overlaps the previous batch's forward pass."""

    def __init__(self, tiles: list[np.ndarray], device: torch.device, stream) -> None:
        if device.type != "cuda":
            self.tensor, self.event = torch.from_numpy(np.stack(tiles)), None
            return
        host = torch.empty((len(tiles), *tiles[0].shape), dtype=torch.float32, pin_memory=True)
        np.stack(tiles, out=host.numpy())
        with torch.cuda.stream(stream):
            self.tensor = host.to(device, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record(stream)
        self._host = host  # alive until the copy is done

    def ready(self) -> torch.Tensor:
        """The batch, safe to use on the current stream."""
        if self.event is not None:
            current = torch.cuda.current_stream(self.tensor.device)
            current.wait_event(self.event)
            self.tensor.record_stream(current)
        return self.tensor


def _produce(sources: Iterable[Source], tile, overlap, batch_size: int, device: torch.device,
             out: queue.Queue, stop: threading.Event) -> None:
    """Background thread: read tiles and put batches ``(items, _Batch or None)`` on ``out``.

    ``items`` lists ``(source_index, source, window, computed)`` in order; a window is None at a source's end.
    """
    try:
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        items, tiles = [], []

        def put(value) -> None:
            while not stop.is_set():  # give up when the consumer has gone
                try:
                    return out.put(value, timeout=0.1)
                except queue.Full:
                    continue
            raise _Stopped

        def flush() -> None:
            put((list(items), _Batch(tiles, device, stream) if tiles else None))
            items.clear()
            tiles.clear()

        for index, source in enumerate(sources):
            for window in grid_windows(*source.shape, tile, overlap):
                if source.skip(window):
                    items.append((index, source, window, False))
                    continue
                if tiles and tiles[0].shape[-2:] != (window.height, window.width):
                    flush()
                items.append((index, source, window, True))
                tiles.append(np.ascontiguousarray(source.read(window), dtype=np.float32))
                if len(tiles) == batch_size:
                    flush()
            items.append((index, source, None, False))
        flush()
        put(_END)
    except _Stopped:
        pass
    except BaseException as err:  # re-raised in the consuming thread
        out.put(err)


def sliding_window(
    predictor: TilePredictor,
    sources: Iterable[Source],
    out_channels: int,
    tile: tuple[int, int] = (512, 512),
    overlap: tuple[int, int] = (64, 64),
    batch_size: int = 8,
    blend: str = "gaussian",
    progress: bool | str = False,
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Predict every source tile by tile and yield finished row blocks as they complete.

    Yields:
        ``(source_index, first_row, logits (K, n, W), covered (n, W))`` on the predictor's device; rows of
        each source come in order and together cover it; ``covered`` is False where every tile was skipped.
    """
    sources = list(sources) if progress else sources
    total = sum(len(grid_windows(*s.shape, tile, overlap)) for s in sources) if progress else None
    bar = tqdm(total=total, desc=progress if isinstance(progress, str) else "tiles", unit="tile",
               disable=not progress)
    batches: queue.Queue = queue.Queue(maxsize=3)
    stop = threading.Event()
    threading.Thread(target=_produce, args=(sources, tile, overlap, batch_size, predictor.device, batches, stop),
                     daemon=True).start()
    mergers: dict[int, StripMerger] = {}
    weights: dict[tuple[int, int], torch.Tensor] = {}
    try:
        while (batch := batches.get()) is not _END:
            if isinstance(batch, BaseException):
                raise batch
            items, tiles = batch
            logits = iter(predictor(tiles.ready())) if tiles is not None else iter(())
            for index, source, window, computed in items:
                merger = mergers.get(index)
                if merger is None:
                    height, width = source.shape
                    merger = mergers[index] = StripMerger(height, width, out_channels, min(tile[0], height),
                                                          predictor.device)
                done = merger.release(window.row if window else merger.height)
                if done:
                    yield (index, *done)
                if window is None:
                    del mergers[index]
                    continue
                bar.update(1)
                if computed:
                    shape = (window.height, window.width)
                    if shape not in weights:
                        weights[shape] = torch.from_numpy(blend_weights(*shape, blend)).to(predictor.device)
                    merger.add(window, next(logits), weights[shape])
    finally:
        stop.set()
        bar.close()


def predict_array(predictor: TilePredictor, image: np.ndarray, out_channels: int, **kwargs) -> torch.Tensor:
    """Whole-image convenience: (C, H, W) array -> blended logits (K, H, W) on the predictor's device."""
    blocks = [block for _, _, block, _ in sliding_window(predictor, [ArraySource(image)], out_channels, **kwargs)]
    return torch.cat(blocks, dim=1)
