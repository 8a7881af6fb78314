"""Export checks any domain can run on its own checkpoint (tests/core/test_export.py runs them on the toy domain).

A domain's test module calls them with its checkpoint and one of its inputs::

    from tests.export_checks import assert_export_parity, assert_runtime_matches_torch, export_file

    @pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
    def test_export_parity(checkpoint, tmp_path, fmt):
        assert_export_parity(checkpoint, export_file(checkpoint, fmt, tmp_path / f"model.{fmt}"), fmt)

    def test_onnx_runtime_writes_what_torch_writes(checkpoint, tmp_path):
        model = export_file(checkpoint, "onnx", tmp_path / "model.onnx")
        assert_runtime_matches_torch("landcover", checkpoint, model, "onnx", write_input(tmp_path), tmp_path,
                                     read=read_classes)  # read: output file -> array of classes
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.checkpoint import load_task
from segsuite.core.cli import run
from segsuite.core.export import export_model
from segsuite.core.predict import predict
from segsuite.core.runtime import load_exported
from tests.helpers import compose_config

SIZES = ((64, 64), (45, 83))  # one multiple of 32, one not (padded to 64 x 96 and cropped back)
TOLERANCE = 1e-4


def export_file(checkpoint: Path, fmt: str, output: Path) -> Path:
    """``checkpoint`` exported as ``fmt`` to ``output``."""
    return export_model(checkpoint, fmt, output)


def assert_export_parity(checkpoint: Path, model_file: Path, fmt: str, sizes: Sequence[tuple[int, int]] = SIZES,
                         batch: int = 2) -> list[float]:
    """The exported model's logits (through the runtime's padding) equal the checkpoint network's within
    :data:`TOLERANCE`, with identical class argmax, at every size; returns max |diff| per size."""
    task = load_task(checkpoint)
    predictor = load_exported(model_file, fmt, trust=True)  # exported by the test
    k, channels = task.hparams.num_classes, task.hparams.model["in_channels"]
    diffs = []
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(i))
        with torch.inference_mode():
            expected, got = task.net(x), predictor(x)
        assert got.shape == expected.shape == (batch, task.out_channels, h, w)
        diffs.append(float((got - expected).abs().max()))
        assert diffs[-1] <= TOLERANCE, f"{fmt} at {h}x{w}: max |diff| {diffs[-1]:.3g}"
        assert torch.equal(got[:, :k].argmax(1), expected[:, :k].argmax(1)), f"{fmt} at {h}x{w}: argmax differs"
    return diffs


def predict_with(domain: str, input: Path, output: Path, *overrides: str) -> int:
    """``predict`` in this process as the CLI runs it; returns the exit status."""
    cfg = compose_config("predict", [f"domain={domain}", f"input={input}", f"output={output}",
                                     f"run_dir={Path(output).parent}", *overrides])
    try:
        run(predict, cfg)
    except SystemExit as exit:
        return int(exit.code)
    return 0


def assert_runtime_matches_torch(domain: str, checkpoint: Path, model_file: Path, runtime: str, input: Path,
                                 tmp_path: Path, overrides: Sequence[str] = (), suffix: str = ".npy",
                                 read: Callable[[Path], Any] = np.load,
                                 main_output: Callable[[Path], Path] = lambda output: output) -> tuple[Path, Path]:
    """``predict runtime=<runtime> model_file=...`` writes the same classes as ``predict checkpoint=...`` on
    ``input`` (``output=<tmp_path>/<runtime>_out<suffix>``; ``main_output``: that argument -> the file holding the
    classes; ``read``: that file -> array)."""
    outputs = tmp_path / f"torch_out{suffix}", tmp_path / f"{runtime}_out{suffix}"
    assert predict_with(domain, input, outputs[0], f"checkpoint={checkpoint}", *overrides) == 0
    trust = ["trust_model=true"] if runtime == "torchscript" else []  # exported by the test itself
    assert predict_with(domain, input, outputs[1], f"runtime={runtime}", f"model_file={model_file}", *trust,
                        *overrides) == 0
    expected, got = (np.asarray(read(main_output(o))) for o in outputs)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert np.array_equal(got, expected), f"{runtime}: {int((got != expected).sum())} pixels differ from torch"
    return outputs
