"""Prediction over many inputs on several processes, launched as training is: ``torchrun`` or SLURM's ``srun``.

Every rank finds and checks the same inputs and plans the same outputs; rank r predicts items r, r + N, ... on its
own device (``cuda:<local rank>`` when there is a GPU) into its own staging folder; then the ranks report to each
other (a gloo process group), and only when every rank succeeded does rank 0 write the run's outputs and the
manifest (``segsuite_manifest.json``: every output and the rank that wrote it) and commit everything. If any rank
failed, nothing is committed and every rank exits with the first error.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")
MANIFEST = "segsuite_manifest.json"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the prediction processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, else SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/
        ``SLURM_LOCALID`` inside an ``srun`` step, else a single process."""
        env = os.environ
        if "WORLD_SIZE" in env and "RANK" in env:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
        if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
            return cls(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
        return cls()

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """``(index, item)`` of the items this rank predicts."""
        return [(i, item) for i, item in enumerate(items) if i % self.world == self.rank]


def _init(ranks: Ranks) -> None:
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
    os.environ.setdefault("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", 0)) % 1000))
    dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world, timeout=datetime.timedelta(hours=6))


def gather(ranks: Ranks, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (a barrier too)."""
    if not ranks.distributed:
        return [value]
    _init(ranks)
    values: list[Any] = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def device_for(ranks: Ranks, device: str | None) -> str | None:
    """``cuda:<local rank>`` for distributed runs on a GPU machine when no device was asked for."""
    import torch

    if device is None and ranks.distributed and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
    return device
