"""Instance benchmarks, each a ratio within one run: panoptic quality (ours vs torchmetrics' ``PanopticQuality``
on the same frame) and streaming instance labelling (row strips + union-find vs labelling the whole image)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torchmetrics.detection import PanopticQuality

from segsuite.core.instances.extract import Instancer
from segsuite.core.instances.metrics import PanopticMetrics
from segsuite.core.instances.stream import StripLabeller


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def frame(height: int, width: int, objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3-class frame (0 stuff background, 1 stuff band, 2 things) with ``objects`` rectangles; class map and ids."""
    rng = np.random.default_rng(seed)
    semantic = np.zeros((height, width), np.int64)
    semantic[height // 2 :] = 1
    ids = np.zeros_like(semantic)
    for i in range(1, objects + 1):
        r, c = rng.integers(0, height - 60), rng.integers(0, width - 60)
        h, w = rng.integers(20, 60, 2)
        semantic[r : r + h, c : c + w] = 2
        ids[r : r + h, c : c + w] = i
    return semantic, ids


def run(quick: bool = False) -> dict[str, float]:
    height, width = (512, 1024) if quick else (1024, 2048)
    semantic, ids = frame(height, width, 20)
    pred_sem, pred_ids = np.roll(semantic, 3, axis=1), np.roll(ids, 3, axis=1)  # shifted: IoUs below 1
    ours = PanopticMetrics(3, things=[2])
    theirs = PanopticQuality(things={2}, stuffs={0, 1})
    pair = lambda s, i: torch.from_numpy(np.stack([s, np.where(s == 2, i, 0)], -1))[None]  # noqa: E731
    p, t = pair(pred_sem, pred_ids), pair(semantic, ids)
    repeats = 2 if quick else 3
    t_ours = _best(lambda: ours.update(pred_sem, pred_ids, semantic, ids), repeats)
    t_theirs = _best(lambda: theirs.update(p, t), repeats)

    cut = Instancer([2], ["a", "b", "c"], min_size=4)
    t_whole = _best(lambda: cut(semantic), repeats)

    def stream() -> None:
        labeller = StripLabeller(cut, width)
        for r in range(0, height, 256):
            labeller.push(semantic[r : r + 256])
        labeller.finish()

    t_stream = _best(stream, repeats)
    result = {"pq_ours_s": t_ours, "pq_torchmetrics_s": t_theirs, "pq_speedup": t_theirs / t_ours,
              "label_whole_s": t_whole, "label_stream_s": t_stream, "stream_vs_whole": t_whole / t_stream}
    print(f"\npanoptic quality update, one {height}x{width} frame, 20 objects + 2 stuff classes")
    print(f"  ours (PanopticMetrics):          {t_ours * 1000:9.1f} ms")
    print(f"  torchmetrics PanopticQuality:    {t_theirs * 1000:9.1f} ms")
    print(f"  speed-up:                        {result['pq_speedup']:9.1f}x")
    print("\ninstance labelling of the same frame (connected components, min size 4)")
    print(f"  whole image at once:             {t_whole * 1000:9.1f} ms")
    print(f"  256-row strips + union-find:     {t_stream * 1000:9.1f} ms")
    print(f"  speed ratio stream / whole:      {result['stream_vs_whole']:9.3f}")
    return result
