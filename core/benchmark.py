"""The one benchmark harness: contenders timed with interleaved repeats in one run, ratios against a baseline,
and one table printer. Every domain benchmark (``scripts/benchmark.py NAME``) uses it.

Interleaving (A B C, A B C, ...) spreads machine noise over every contender alike; the median of the repeats is
reported with its spread (min-max), and ratios are speeds relative to the baseline (> 1: faster than it).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds of one contender over the repeats."""

    name: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(contenders: Mapping[str, Callable[[], object]], repeats: int = 3, warmup: int = 1) -> dict[str, Timing]:
    """Time each contender ``repeats`` times, interleaved, after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(name, tuple(t)) for name, t in times.items()}


BEST, CONTIGUOUS = "best", "contiguous"  # the bare forward's layouts: the engine's (the limit), as users have it


def bare_forward(net: torch.nn.Module, batches: Sequence[torch.Tensor],
                 device: torch.device | str, amp: bool = False, layout: str = BEST) -> Callable[[], None]:
    """The baseline every predict path is compared with: the network alone on the same batches, already in memory
    (copied to the device and the argmax brought back, as any user of the model would); ``amp``: under bfloat16
    autocast, as ``TilePredictor(amp=True)`` runs it.

    ``layout``: ``"best"`` runs it as the engine does (2D batches and the network in channels-last memory layout,
    :class:`~segsuite.core.inference.TilePredictor`'s default; 3D as they are), the limit a predict path can reach;
    ``"contiguous"`` runs it as users have it (the default contiguous layout)."""
    if layout not in (BEST, CONTIGUOUS):
        raise ValueError(f"bare_forward(layout={layout!r}): use {BEST!r} (the engine's) or {CONTIGUOUS!r}")
    last = layout == BEST and all(b.dim() == 4 for b in batches)
    net = copy.deepcopy(net).to(device, memory_format=torch.channels_last if last else torch.contiguous_format).eval()
    device_type = torch.device(device).type

    @torch.inference_mode()
    def run() -> None:
        for batch in batches:
            x = batch.to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last) if last else x
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)
            logits.argmax(1).cpu()

    return run


def bare_forwards(net: torch.nn.Module, batches: Sequence[torch.Tensor], device: torch.device | str,
                  amp: bool = False) -> dict[str, Callable[[], None]]:
    """Both baselines as contenders, the best first: :data:`BARE_BEST` and :data:`BARE_CONTIGUOUS`."""
    return {BARE_BEST: bare_forward(net, batches, device, amp, BEST),
            BARE_CONTIGUOUS: bare_forward(net, batches, device, amp, CONTIGUOUS)}


BARE_BEST = "bare forward, engine's layout (best)"
BARE_CONTIGUOUS = "bare forward, contiguous (as users have it)"


def ratios(timings: Mapping[str, Timing], baseline: str) -> dict[str, float]:
    """Speed of each contender relative to ``baseline`` (baseline time / contender time)."""
    base = timings[baseline].median
    return {name: base / t.median for name, t in timings.items()}


def paired_ratios(timings: Mapping[str, Timing], name: str, baseline: str) -> tuple[float, ...]:
    """Speed of ``name`` relative to ``baseline`` in each interleaved round (baseline time / its time), whose
    min-max is the spread of the median ratio: a round's two contenders ran next to each other, on the same load."""
    return tuple(b / t for b, t in zip(timings[baseline].seconds, timings[name].seconds))


def print_table(title: str, timings: Mapping[str, Timing], baseline: str, goals: Mapping[str, float] | None = None,
                unit: str = "", work: float | None = None) -> dict[str, float]:
    """Print median seconds, spread, optional throughput (``work`` units per run) and the ratio to ``baseline`` with
    its goal; returns the ratios."""
    goals = goals or {}
    speed = ratios(timings, baseline)
    print(f"\n{title}")
    print(f"  {'contender':<44} {'median s':>9} {'min-max s':>15} {'rate':>12} {'ratio':>7}  goal")
    for name, t in timings.items():
        lo, hi = t.spread
        rate = f"{work / t.median:9.1f} {unit}" if work else ""
        goal = f">= {goals[name]}" if name in goals else ""
        print(f"  {name:<44} {t.median:9.3f} {lo:7.3f}-{hi:<7.3f} {rate:>12} {speed[name]:7.3f}  {goal}")
    return speed
