"""Training throughput: the real DataModule against the same model fed pre-built in-memory tensors."""

from __future__ import annotations

import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from segsuite.core.data import SegDataModule
from segsuite.core.losses import CrossEntropyLoss
from segsuite.core.task import SegmentationTask
from segsuite.domains.toy.data import build_datasets


class StepTimer(L.Callback):
    """Wall time of training steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times = warmup, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    @property
    def steps_per_s(self) -> float:
        t = self.times[self.warmup - 1 :]
        return (len(t) - 1) / (t[-1] - t[0])


def _task() -> SegmentationTask:
    model = {"_target_": "segsuite.core.models.create_model", "arch": "unet", "encoder_name": "resnet18",
             "in_channels": 3,
             "classes": 3}
    return SegmentationTask(model, num_classes=3, loss=CrossEntropyLoss(),
                            optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))


def _fit(loader_or_dm, steps: int, warmup: int, accelerator: str) -> float:
    L.seed_everything(0, verbose=False)
    timer = StepTimer(warmup)
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_steps=steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    if isinstance(loader_or_dm, SegDataModule):
        trainer.fit(_task(), datamodule=loader_or_dm)
    else:
        trainer.fit(_task(), train_dataloaders=loader_or_dm)
    return timer.steps_per_s


def run(quick: bool = False, size: int = 128, batch_size: int = 8, num_workers: int = 1) -> dict[str, float]:
    """Steps/s through ``SegDataModule`` (toy data generated on the fly) vs pre-built tensors, same model."""
    steps, warmup = (12, 3) if quick else (40, 5)
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    n = steps * batch_size
    datamodule = SegDataModule(lambda: build_datasets(n_train=n, n_val=batch_size, size=size), batch_size=batch_size,
                               num_workers=num_workers)
    datamodule.setup()
    train = datamodule.splits["train"]
    prebuilt = [train[i] for i in range(n)]  # the same samples, already in memory
    memory = DataLoader(prebuilt, batch_size=batch_size, shuffle=True, drop_last=True)
    pipeline = _fit(datamodule, steps, warmup, accelerator)
    bare = _fit(memory, steps, warmup, accelerator)
    result = {"datamodule_steps_per_s": pipeline, "in_memory_steps_per_s": bare, "ratio": pipeline / bare}
    print(f"\ntraining throughput ({accelerator}, Unet-resnet18, batch {batch_size}x3x{size}x{size}, "
          f"{num_workers} loader worker(s))")
    print(f"  DataModule (toy data made on the fly): {pipeline:8.2f} steps/s")
    print(f"  pre-built in-memory tensors:           {bare:8.2f} steps/s")
    print(f"  ratio:                                 {result['ratio']:8.3f}   (goal >= 0.9)")
    return result
