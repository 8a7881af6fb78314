"""``segsuite benchmark compile``: U-Net (resnet18) forward passes compiled with torch.compile (Inductor) against
eager, the same weights and input; the one-off compilation time is reported apart."""

from __future__ import annotations

import time

import torch

from segsuite.core.benchmark import print_table, timeit
from segsuite.core.compiled import compile_network
from segsuite.core.models import create_model


def run(quick: bool = False, device: str | None = None) -> dict[str, float]:
    """``segsuite benchmark compile``: U-Net (resnet18) forward passes, torch.compile (Inductor) against eager."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size, batch = (128, 4) if quick else (256, 8)
    torch.manual_seed(0)
    eager = create_model(arch="Unet", encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=6)
    eager = eager.to(device).eval().to(memory_format=torch.channels_last)
    compiled = create_model(arch="Unet", encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=6)
    compiled.load_state_dict(eager.state_dict())
    compiled = compiled.to(device).eval().to(memory_format=torch.channels_last)
    if not compile_network(compiled, True, "the benchmark's U-Net"):
        print("compile: torch.compile is not available here; nothing to compare")
        return {}
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(x)  # the compilation, timed once
        first = time.perf_counter() - start
        same = torch.allclose(compiled(x), eager(x), atol=1e-3, rtol=1e-3)
        timings = timeit({"eager": lambda: eager(x), "torch.compile (inductor)": lambda: compiled(x)},
                         repeats=3 if quick else 5)
    speed = print_table(f"U-Net resnet18 forward, batch {batch} x {size}^2 on {device} (compilation took "
                        f"{first:.1f} s once; outputs equal: {same})", timings, "eager", unit="img/s",
                        work=batch)
    return {"compile_vs_eager": speed["torch.compile (inductor)"], "compile_seconds": first}
