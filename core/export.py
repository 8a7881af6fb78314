"""``export(cfg)``: a checkpoint as a self-describing ONNX or TorchScript file that runs without the training stack.

What is exported is the inner network (inside :class:`~segsuite.core.models.factory.PadToStride`), with a symbolic
batch, height and width; the file's metadata records ``stride`` and ``min_size`` so a runtime pads and crops as
``PadToStride`` does (:mod:`segsuite.core.runtime`). The metadata is one JSON document (:func:`export_metadata`): ONNX
keeps it in ``model.metadata_props["segsuite"]``, TorchScript in the archive's extra file ``segsuite.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segsuite.core.checkpoint import describe, load_task
from segsuite.core.cli import CONF
from segsuite.core.contracts import DataMeta
from segsuite.core.ensemble import MeanProbabilities, adapt_input, check_members, checkpoint_paths
from segsuite.core.errors import ConfigError
from segsuite.core.io import atomic_path, check_writable, plain
from segsuite.core.models.factory import PadToStride
from segsuite.core.runtime import EXTRA_FILE, METADATA_KEY, RUNTIMES, file_sha256, load_exported
from segsuite.core.task import SegmentationTask

FORMATS = RUNTIMES  # onnx, torchscript
INPUT_NAME, OUTPUT_NAME = "image", "logits"
PARITY_TOLERANCE = 1e-3  # export self-check at another input size: max |diff| relative to the logits' scale


def unwrap(net: nn.Module) -> tuple[nn.Module, int, int]:
    """``(inner network, stride, min_size)``: the network inside ``PadToStride``, or ``net`` itself (stride 1)."""
    if isinstance(net, PadToStride):
        return net.net, int(net.stride), int(net.min_size)
    return net, 1, 0


def version() -> str:
    try:
        return importlib.metadata.version("segsuite")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def domain_defaults(name: str, node: Any = None) -> dict[str, Any]:
    """The domain's inference settings (``inference``: tile, overlap, batch_size, blend; ``tta_flips``): from
    ``node`` (``cfg.domain``) when given, else read from ``conf/domain/<name>.yaml`` without Hydra. Values that
    interpolate other configs cannot be read that way and are left out."""
    if node is None:
        path = CONF / "domain" / f"{name}.yaml"
        if not name or not path.is_file():
            return {}
        node = OmegaConf.load(path)
    out = {}
    for key in ("inference", "tta_flips"):
        try:
            value = node.get(key)
            value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except Exception:  # an interpolation into another config
            continue
        if isinstance(value, dict):
            value.pop("_target_", None)
        if value is not None:
            out[key] = value
    return out


def export_metadata(task: SegmentationTask, checkpoint: str | os.PathLike, fmt: str,
                    defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything predict needs besides the weights, as plain JSON values.

    ``data_meta`` is the checkpoint's full data description (channels, bands, normalisation, classes, colours,
    ignore index, patch size...); ``stride`` / ``min_size`` say how inputs are padded; ``out_channels`` are the
    class logits then, when ``border_channel``, the border logit; ``inference`` / ``tta_flips`` are the domain's
    defaults.
    """
    hp = task.hparams
    _, stride, min_size = unwrap(task.net)
    instances = dict(hp.get("instances") or {})
    meta = DataMeta.from_dict({"in_channels": hp.model.get("in_channels"), "class_names": hp.class_names,
                               "num_classes": hp.num_classes, "ignore_index": hp.ignore_index,
                               **dict(hp.get("data_meta") or {})})
    info = describe(checkpoint)
    return plain({
        "format": fmt,
        "segsuite_version": version(),
        "domain": hp.get("domain") or "",
        "model": dict(hp.model),
        "stride": stride,
        "min_size": min_size,
        "in_channels": meta.in_channels,
        "num_classes": meta.num_classes,
        "class_names": list(meta.class_names),
        "class_colors": meta.class_colors,
        "ignore_index": meta.ignore_index,
        "out_channels": task.out_channels,
        "border_channel": task.border_channel,
        "things": list(hp.get("things") or instances.get("things") or []),
        "instances": instances or None,
        "data_meta": meta.to_dict(),
        **dict(defaults or {}),
        "checkpoint": {"file": Path(checkpoint).name, "epoch": info.get("epoch"),
                       "global_step": info.get("global_step")},
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", meta.in_channels, "height", "width"],
                  "note": f"pad height and width to a multiple of {stride} (at least {min_size}), replicating edges"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", task.out_channels, "height", "width"],
                   "note": "class logits, then the border logit when border_channel; crop back to the input size"},
    })


def example_input(in_channels: int, stride: int, min_size: int) -> torch.Tensor:
    """A batch to trace with: 2 images of unequal height and width, so no size is mistaken for a constant."""
    base = max(2 * stride, -(-min_size // stride) * stride)
    return torch.randn(2, in_channels, base, base + stride, generator=torch.Generator().manual_seed(0))


def _onnx(net: nn.Module, example: torch.Tensor, path: Path, text: str) -> None:
    import onnx

    dims = {0: "batch", 2: "height", 3: "width"}
    for name in ("onnx_ir", "onnxscript"):  # their passes log every step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch.export (dynamo) keeps batch, height and width symbolic; it handles smp Unet/FPN and our FCN
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=(dims,), verbose=False)
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: text})
    onnx.save_model(model, str(path))


def _torchscript(net: nn.Module, example: torch.Tensor, path: Path, text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export, which has no runtime
        try:
            module = torch.jit.script(net)
        except Exception:  # not scriptable (some timm encoders): trace, checked at another size by _self_check
            module = torch.jit.trace(net, example, check_trace=False)
        torch.jit.save(module, str(path), _extra_files={EXTRA_FILE: text})


WRITERS = {"onnx": _onnx, "torchscript": _torchscript}


def _self_check(net: nn.Module, path: Path, fmt: str, in_channels: int, stride: int, min_size: int) -> float:
    """Max |diff| between ``net`` and the written file at a size other than the traced one (ValueError if off).

    This catches exports that run at any size but compute with sizes fixed at export: the dynamo exporter bakes
    adaptive pooling (PSPNet, UPerNet) to the example's size, and the legacy one (``dynamo=False``) refuses it, so
    there is no fallback; TorchScript handles them."""
    base = max(3 * stride, -(-min_size // stride) * stride + stride)
    x = torch.randn(1, in_channels, base + 2 * stride, base, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = net(x)
        got = load_exported(path, fmt, trust=True).forward(x)  # the file just written
    if got.shape != expected.shape:
        raise ValueError(f"the file gives shape {tuple(got.shape)} for input {tuple(x.shape)}, not "
                         f"{tuple(expected.shape)} (sizes fixed at export)")
    diff = float((got - expected).abs().max())
    if diff > PARITY_TOLERANCE * max(1.0, float(expected.abs().max())):
        raise ValueError(f"the file differs from the network by {diff:.3g} at input {tuple(x.shape)} (sizes fixed "
                         "at export)")
    return diff


def export_model(checkpoint: Any, fmt: str, output: str | os.PathLike, overwrite: bool = False,
                 domain: Any = None) -> Path:
    """Write the checkpoint's network as ``fmt`` (onnx | torchscript) to ``output`` with its metadata.

    ``checkpoint`` may also be several checkpoints or a ``segsuite cv`` folder: the ensemble becomes one network
    (:class:`~segsuite.core.ensemble.MeanProbabilities`). ``domain`` (``cfg.domain``) supplies the inference
    defaults and must be the checkpoints' domain; without it they are read from ``conf/domain/<domain>.yaml``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    paths = checkpoint_paths(checkpoint)
    for path in paths:
        if Path(os.path.abspath(output)) == Path(os.path.abspath(path)):
            raise ConfigError(f"output {output} is the checkpoint being exported; choose another output path "
                              "(overwrite=true does not change this)")
    output = check_writable(output, overwrite)  # before any work
    tasks = [load_task(path) for path in paths]
    for task, path in zip(tasks, paths, strict=True):
        _check_exportable(task, path, domain)
    task, trained_on = tasks[0], tasks[0].hparams.get("domain") or ""
    metadata = export_metadata(task, paths[0], fmt, domain_defaults(trained_on, domain))
    if len(tasks) == 1:
        net, stride, min_size = unwrap(task.net)
    else:
        net, stride, min_size = _ensemble(tasks, paths, metadata)
    text = json.dumps(metadata, allow_nan=False)
    in_channels = int(task.hparams.model.get("in_channels") or task.hparams.data_meta["in_channels"])
    with atomic_path(output, overwrite) as staged:
        try:
            WRITERS[fmt](net, example_input(in_channels, stride, min_size), staged, text)
            _self_check(net, staged, fmt, in_channels, stride, min_size)
        except Exception as err:  # the exporters raise many kinds; the user needs the architecture and format
            arch = task.hparams.model.get("arch", type(net).__name__)
            hint = "; try format=torchscript" if fmt == "onnx" else ""
            raise ConfigError(f"cannot export architecture {arch!r} to {fmt}: {_first_line(err)}{hint}") from err
    return output


def _check_exportable(task: SegmentationTask, checkpoint: Path, domain: Any) -> None:
    trained_on = task.hparams.get("domain") or ""
    if domain is not None and trained_on and domain.get("name") != trained_on:
        raise ConfigError(f"checkpoint {checkpoint} was trained for domain {trained_on!r}, not "
                          f"{domain.get('name')!r}; run with domain={trained_on} or without domain")
    if (task.hparams.get("data_meta") or {}).get("spatial_dims") == 3:
        raise ConfigError(f"checkpoint {checkpoint} holds a 3D network (volumes in, volumes out); exporting one is not "
                          "supported yet: predict with the checkpoint itself")


def _ensemble(tasks: list[SegmentationTask], paths: list[Path], metadata: dict[str, Any]
              ) -> tuple[nn.Module, int, int]:
    """Several checkpoints as one semantic network (their mean class probabilities, as log), padded to a multiple
    of every member's stride; ``metadata`` is rewritten to describe it."""
    hps = [t.hparams for t in tasks]
    check_members(hps, paths, [int(hp["model"].get("in_channels") or -1) for hp in hps])
    metas = [dict(hp.get("data_meta") or {}) for hp in hps]
    inner = [unwrap(t.net) for t in tasks]
    nets = [adapt_input(net, metas[0], meta, p) for (net, _, _), meta, p in zip(inner, metas, paths, strict=True)]
    k, stride, min_size = int(hps[0].num_classes), math.lcm(*(s for _, s, _ in inner)), max(m for _, _, m in inner)
    metadata.update(plain({
        "stride": stride, "min_size": min_size, "out_channels": k, "border_channel": False, "things": [],
        "instances": None, "models": [dict(hp.model) for hp in hps], "checkpoint": None,
        "ensemble": [{"file": p.name, "epoch": t.get("epoch"), "global_step": t.get("global_step")}
                     for p, t in zip(paths, map(describe, paths), strict=True)],
        "output": {**metadata["output"], "shape": ["batch", k, "height", "width"],
                   "note": "log of the members' mean class probabilities (its softmax is their mean); crop back to "
                           "the input size"}}))
    metadata["input"]["note"] = (f"pad height and width to a multiple of {stride} (at least {min_size}), replicating "
                                 "edges")
    return MeanProbabilities(nets, k).eval(), stride, min_size


def export(cfg: DictConfig) -> Path:
    """``scripts/export.py``: ``cfg.checkpoint`` -> ``cfg.output`` as ``cfg.format``."""
    domain = cfg.domain if cfg.get("domain") else None
    checkpoint = OmegaConf.to_container(cfg.checkpoint) if OmegaConf.is_config(cfg.checkpoint) else cfg.checkpoint
    path = export_model(checkpoint, str(cfg.format), cfg.output, bool(cfg.overwrite), domain)
    if cfg.format == "torchscript":  # a program: who loads it checks this hash (trust_model=SHA256)
        print(f"wrote {path} (torchscript, sha256 {file_sha256(path)}; load it with trust_model=<that sha256>)")
    else:
        print(f"wrote {path} ({cfg.format})")
    return path


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__
