"""Prediction over many inputs on several processes, launched as training is: ``torchrun`` or SLURM's ``srun``.

Every rank finds and checks the same inputs and plans the same outputs; rank r predicts items r, r + N, ... on its
own device (``cuda:<local rank>`` when there is a GPU) into its own staging folder; then the ranks report to each
other (a gloo process group), and only when every rank succeeded does rank 0 write the run's outputs and the
manifest (``segsuite_manifest.json``: every output and the rank that wrote it) and commit everything. If any rank
failed, nothing is committed and every rank exits with the first error.

A rank that dies (killed, out of memory, node lost) must not leave the others waiting: every rank joins the group
before any work and beats a heartbeat (a counter in the group's store, every second). Before each collective a rank
waits in the store, not in gloo, for the others to arrive; it stops with an error naming the rank when that rank's
heartbeat stops for ``min(distributed_timeout, 60)`` s, or when it finishes no item for ``distributed_timeout`` s.
The survivors then remove their staging and exit non-zero; the dead rank's staging folder is removed by the next run
that stages there (:func:`segsuite.core.io.remove_stale_staging`). The collectives themselves time out after
``distributed_timeout`` s too.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.distributed as dist

from segsuite.core.errors import DataError

T = TypeVar("T")
MANIFEST = "segsuite_manifest.json"
TIMEOUT_S = 1800.0  # distributed_timeout's default: longer than the slowest item of any domain on a CPU
HEARTBEAT_S = 1.0  # how often a rank says it is alive
DEAD_AFTER_S = 60.0  # a rank silent for min(this, timeout) is dead
POLL_S = 0.2


@dataclass(frozen=True)
class Ranks:
    """This process's place among the prediction processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    timeout_s: float = TIMEOUT_S  # distributed_timeout: see the module docstring

    @classmethod
    def from_env(cls, timeout_s: float | None = None) -> Ranks:
        """torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, else SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/
        ``SLURM_LOCALID`` inside an ``srun`` step, else a single process."""
        env, timeout = os.environ, float(timeout_s or TIMEOUT_S)
        if timeout <= 0:
            raise DataError(f"distributed_timeout={timeout_s} must be a positive number of seconds")
        if "WORLD_SIZE" in env and "RANK" in env:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), timeout)
        if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
            return cls(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), timeout)
        return cls(timeout_s=timeout)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """``(index, item)`` of the items this rank predicts."""
        return [(i, item) for i, item in enumerate(items) if i % self.world == self.rank]


class _Group:
    """The gloo group of this process and its heartbeat in the group's store (see the module docstring)."""

    def __init__(self, ranks: Ranks) -> None:
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", 0)) % 1000))
        if not dist.is_initialized():
            try:
                dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world,
                                        timeout=datetime.timedelta(seconds=ranks.timeout_s))
            except Exception as err:  # a rank that never started, or a wrong MASTER_ADDR/PORT
                raise DataError(f"rank {ranks.rank} of {ranks.world}: the ranks did not all join at "
                                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within distributed_timeout="
                                f"{ranks.timeout_s:g} s ({str(err).strip().splitlines()[0][:200]}); nothing was "
                                "written") from None
        prefix = f"segsuite/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}/"
        self.store = dist.PrefixStore(prefix, dist.distributed_c10d._get_default_store())
        self.ranks, self.stopped = ranks, threading.Event()
        self.dead_after = min(ranks.timeout_s, DEAD_AFTER_S)
        self._count("beat")
        threading.Thread(target=self._beat, name="segsuite-heartbeat", daemon=True).start()

    def _count(self, name: str, rank: int | None = None, step: int = 1) -> int:
        return int(self.store.add(f"{name}/{self.ranks.rank if rank is None else rank}", step))

    def _beat(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                self._count("beat")
            except Exception:  # the store's host (rank 0) is gone: the main thread finds out when it waits
                return

    def item_done(self) -> None:
        self._count("items")

    def wait(self, phase: str) -> None:
        """Block until every rank has reached ``phase``; DataError naming a rank that died or stalled."""
        me, world = self.ranks.rank, self.ranks.world
        try:
            self._count(phase)
            seen: dict[tuple[str, int], tuple[int, float]] = {}  # (counter, rank) -> (value, when it last changed)
            while waiting := [r for r in range(world) if r != me and self._count(phase, r, 0) == 0]:
                for rank in waiting:
                    self._check(rank, seen)
                time.sleep(POLL_S)
        except DataError:
            raise
        except Exception as err:  # the store lives in rank 0's process
            raise DataError(f"rank {me} lost rank 0 (its store stopped answering: {str(err).splitlines()[0]}); "
                            "rank 0 stopped, nothing was written") from None

    def _check(self, rank: int, seen: dict[tuple[str, int], tuple[int, float]]) -> None:
        now = time.monotonic()
        for name, limit in (("beat", self.dead_after), ("items", self.ranks.timeout_s)):
            value = self._count(name, rank, 0)
            last, since = seen.get((name, rank), (None, now))
            since = now if value != last else since
            seen[name, rank] = (value, since)
            if now - since >= limit:
                what = "stopped (no heartbeat" if name == "beat" else "is stuck (no item finished"
                raise DataError(f"rank {rank} {what} for {now - since:.0f} s; distributed_timeout="
                                f"{self.ranks.timeout_s:g}); rank {self.ranks.rank} stops, nothing was written")

    def stop(self) -> None:
        self.stopped.set()


_group: _Group | None = None


def join(ranks: Ranks) -> None:
    """Join the run's process group and start beating (distributed runs only; idempotent)."""
    global _group
    if ranks.distributed and _group is None:
        _group = _Group(ranks)


def leave() -> None:
    """Stop this process's heartbeat (at the end of a run, failed or not)."""
    global _group
    if _group is not None:
        _group.stop()
        _group = None


def item_done(ranks: Ranks) -> None:
    """Tell the others this rank finished an item (what ``distributed_timeout`` measures)."""
    if ranks.distributed and _group is not None:
        _group.item_done()


def gather(ranks: Ranks, value: Any, phase: str = "gather") -> list[Any]:
    """Every rank's ``value``, in rank order (a barrier too); waits for the others in the store first, so a dead
    rank is named instead of waited for."""
    if not ranks.distributed:
        return [value]
    join(ranks)
    assert _group is not None
    _group.wait(phase)
    values: list[Any] = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def device_for(ranks: Ranks, device: str | None) -> str | None:
    """``cuda:<local rank>`` for distributed runs on a GPU machine when no device was asked for."""
    import torch

    if device is None and ranks.distributed and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
    return device
