"""Run a model written by :mod:`segsuite.core.export` without the training stack (no Lightning, no checkpoint).

An exported file holds the inner network (without :class:`~segsuite.core.models.factory.PadToStride`, so its batch,
height and width stay symbolic) and one JSON document of metadata (see :func:`segsuite.core.export.export_metadata`).
The predictors here have :class:`~segsuite.core.inference.TilePredictor`'s interface, so the one pipeline runs them
unchanged: they pad every batch to the network's stride exactly as ``PadToStride`` does, crop back, and average flips
(TTA).

ONNX files are data: onnxruntime runs a fixed graph of operators. A TorchScript file is a program: its code runs
at ``torch.jit.load`` and can touch any file, so :class:`TorchScriptPredictor` reads its metadata from the archive
without loading it and loads it only when the user says they trust it (``trust_model=true``, or the file's sha256
as export printed it, checked first).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segsuite.core.errors import ConfigError, DataError

METADATA_KEY = "segsuite"  # ONNX: model.metadata_props key
EXTRA_FILE = "segsuite.json"  # TorchScript: the extra file in the archive
RUNTIMES = ("onnx", "torchscript")


def pad_to_stride(x: torch.Tensor, stride: int, min_size: int = 0) -> torch.Tensor:
    """Pad ``x`` (B, C, H, W) at the bottom and right, replicating edges, to a multiple of ``stride`` that is at
    least ``min_size`` (the same rule as ``PadToStride``)."""
    h, w = x.shape[-2:]
    pad_h = max(-h % stride, min_size - h)
    pad_w = max(-w % stride, min_size - w)
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


class ExportedPredictor:
    """An exported network behind :class:`~segsuite.core.inference.TilePredictor`'s interface, on the CPU.

    Args:
        forward: the bare network, (B, C, H', W') float32 with H', W' multiples of the stride -> (B, K, H', W').
        metadata: the file's metadata (``stride``, ``min_size``...).
        tta_flips: tensor dims to flip for TTA (averaged), as ``TilePredictor``.

    ``channels``: how many of the K outputs to keep (the first ones; None keeps all), e.g. the class logits
    without the border logit.
    """

    device = torch.device("cpu")
    amp = False

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], metadata: dict[str, Any],
                 tta_flips: Sequence[int] = ()) -> None:
        self.forward = forward
        self.metadata = metadata
        self.stride = int(metadata.get("stride", 1))
        self.min_size = int(metadata.get("min_size", 0))
        self.tta_flips = list(tta_flips)
        self.channels: int | None = None

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = self.forward(pad_to_stride(x, self.stride, self.min_size))
        return out[:, : self.channels, :h, :w].float()

    @torch.inference_mode()
    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> float32 logits (B, K, h, w) on the CPU."""
        x = tiles.to(self.device, torch.float32)
        out = self._run(x)
        for dim in self.tta_flips:
            out = out + self._run(x.flip(dim)).flip(dim)
        return out / (1 + len(self.tta_flips))


class OnnxPredictor(ExportedPredictor):
    """A model exported with ``format=onnx``, run by ONNX Runtime (CPU; threads as torch's, i.e. OMP_NUM_THREADS)."""

    def __init__(self, path: str | os.PathLike, tta_flips: Sequence[int] = ()) -> None:
        import onnxruntime as ort

        path = _existing(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own kinds for foreign or truncated files
            raise DataError(f"cannot read {path} as an ONNX model (format=onnx export expected): "
                            f"{_first_line(err)}") from None
        metadata = _checked(_parse(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), path), "onnx", path)
        graph_input = session.get_inputs()[0]
        _check_channels(graph_input.shape, metadata, path)
        name = graph_input.name

        def forward(x: torch.Tensor) -> torch.Tensor:
            try:
                return torch.from_numpy(session.run(None, {name: np.ascontiguousarray(x.numpy())})[0])
            except Exception as err:  # onnxruntime's InvalidArgument, Fail...: the file does not fit its metadata
                raise DataError(f"onnxruntime cannot run {path} on an input of shape {tuple(x.shape)}: "
                                f"{_first_line(err)}") from None

        super().__init__(forward, metadata, tta_flips)


class TorchScriptPredictor(ExportedPredictor):
    """A model exported with ``format=torchscript``, run by ``torch.jit`` (CPU), loaded only if ``trust`` says so
    (see :func:`check_trusted`): its metadata is read and checked first, without running anything."""

    def __init__(self, path: str | os.PathLike, tta_flips: Sequence[int] = (), trust: bool | str = False) -> None:
        path = _existing(path)
        metadata = _checked(_parse(torchscript_metadata(path), path), "torchscript", path)
        check_trusted(path, trust)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as err:  # torch raises many kinds for foreign or truncated files
            raise DataError(f"cannot read {path} as a TorchScript model (format=torchscript export expected): "
                            f"{_first_line(err)}") from None
        super().__init__(module, metadata, tta_flips)


def torchscript_metadata(path: Path) -> str:
    """The text of the archive's ``segsuite.json`` (a TorchScript file is a zip), read without loading the program."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.split("/", 1)[-1] == f"extra/{EXTRA_FILE}"]
            return archive.read(names[0]).decode("utf-8") if names else ""
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} as a TorchScript model (format=torchscript export expected): "
                        f"{_first_line(err)}") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, as export prints it and ``trust_model=`` accepts it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_trusted(path: Path, trust: bool | str) -> None:
    """Refuse to load the TorchScript file ``path`` unless ``trust`` is True or the file's sha256."""
    if trust is True:
        return
    if isinstance(trust, str) and trust.strip():
        digest = file_sha256(path)
        if trust.strip().lower() != digest:
            raise DataError(f"{path} has sha256 {digest}, not the trust_model={trust} given: it is not the file that "
                            "was exported; not loading it")
        return
    raise ConfigError(f"{path} is TorchScript, a program that runs when it is loaded (it can write any file); load it "
                      "only if you trust its author: pass trust_model=true, or trust_model=SHA256 as export printed "
                      "it; for files from others use an ONNX export (data, not code) with runtime=onnx")


PREDICTORS: dict[str, type[ExportedPredictor]] = {"onnx": OnnxPredictor, "torchscript": TorchScriptPredictor}


def load_exported(path: str | os.PathLike, runtime: str, tta_flips: Sequence[int] = (),
                  trust: bool | str = False) -> ExportedPredictor:
    """The exported model ``path`` for ``runtime`` (onnx | torchscript), its metadata in ``.metadata``; a TorchScript
    file is loaded only when ``trust`` (True or its sha256) says so."""
    if runtime not in PREDICTORS:
        raise ConfigError(f"runtime={runtime!r} cannot run an exported model; choose one of {', '.join(RUNTIMES)}")
    if runtime == "torchscript":
        return TorchScriptPredictor(path, tta_flips, trust)
    return PREDICTORS[runtime](path, tta_flips)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported file (ONNX or TorchScript, told apart by trying ONNX first), loading nothing that
    could run code."""
    try:
        return OnnxPredictor(path).metadata
    except DataError:
        path = _existing(path)
        return _parse(torchscript_metadata(path), path)


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist (write one with scripts/export.py)")
    return path


def _parse(text: str | bytes | None, path: Path) -> dict[str, Any]:
    if not text:
        raise DataError(f"{path} holds no segsuite metadata; export the checkpoint with scripts/export.py")
    try:
        metadata = json.loads(text)
    except ValueError as err:
        raise DataError(f"the segsuite metadata in {path} is not valid JSON: {err}") from None
    if not isinstance(metadata, dict):
        raise DataError(f"the segsuite metadata in {path} is not a JSON object")
    return metadata


def _checked(metadata: dict[str, Any], runtime: str, path: Path) -> dict[str, Any]:
    fmt = metadata.get("format")
    if fmt != runtime:
        raise ConfigError(f"{path} was exported with format={fmt}; run it with runtime={fmt}")
    missing = [k for k in ("data_meta", "num_classes", "class_names", "border_channel") if k not in metadata]
    if missing:
        raise DataError(f"the segsuite metadata in {path} lacks {', '.join(missing)}; export the checkpoint again")
    for key, least in (("stride", 1), ("min_size", 0)):
        value = metadata.get(key, least)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise DataError(f"the segsuite metadata in {path} has {key}={value!r}; expected a whole number >= {least} "
                            "(the file was altered or not written by scripts/export.py)")
    return metadata


def _check_channels(shape: Sequence[Any], metadata: dict[str, Any], path: Path) -> None:
    """The network's input channels (when fixed in the graph) are those the metadata says the reader gives it."""
    claimed = (metadata.get("data_meta") or {}).get("in_channels", metadata.get("in_channels"))
    actual = shape[1] if len(shape) == 4 else None
    if isinstance(actual, int) and claimed is not None and claimed != actual:
        raise DataError(f"{path}: its network takes {actual} input channels but its metadata says {claimed}; the file "
                        "was altered or not written by scripts/export.py")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
