"""``predict(cfg)``: the Hydra face of :func:`segsuite.core.pipeline.run_predict`. Loads the model into a
:class:`~segsuite.core.contracts.ModelInfo` (``runtime=torch``: a checkpoint; ``runtime=onnx|torchscript``: a file
written by :mod:`segsuite.core.export`, run without Lightning), builds the :class:`~segsuite.core.contracts.Job` (mode,
instancer, inference options) and the domain's reader and writer from ``cfg.domain``, and runs the one pipeline."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segsuite.core.compiled import for_inference
from segsuite.core.contracts import DataMeta, Job, Mode, ModelInfo
from segsuite.core.distributed import Ranks, device_for
from segsuite.core.errors import ConfigError
from segsuite.core.inference import InferenceOptions, TilePredictor
from segsuite.core.instances import Instancer
from segsuite.core.pipeline import run_predict
from segsuite.core.probes import Version, file_version

RUNTIMES = ("torch", "onnx", "torchscript")


class FirstChannels(nn.Module):
    """The first ``k`` output channels of a network (its class logits without the border logit)."""

    def __init__(self, net: nn.Module, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, : self.k]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def thing_classes(cfg: DictConfig, hparams: Any) -> list[str]:
    """The thing classes: ``instancer.things`` when given, else the checkpoint's, else the domain config's."""
    node = cfg.get("instancer") or {}
    trained = hparams.get("things") or (hparams.get("instances") or {}).get("things")
    for things in (node.get("things"), trained, cfg.domain.get("things")):
        if things:
            return list(_plain(things))
    return []


def build_instancer(cfg: DictConfig, mode: Mode, hparams: Any, has_border: bool) -> Instancer | None:
    """The instance cutter for ``mode`` (None for semantic), its thing classes checked against the checkpoint's."""
    if mode is Mode.SEMANTIC:
        return None
    if not cfg.get("instancer"):
        raise ConfigError(f"task={mode.value} needs an `instancer` config (conf/instancer/default.yaml)")
    node = {k: v for k, v in _plain(cfg.instancer).items() if k != "things"}
    names = list(hparams["class_names"])  # a checkpoint's hparams or an exported model's metadata
    instancer = hydra.utils.instantiate(node)(things=thing_classes(cfg, hparams), class_names=names)
    instancer.uses_border(has_border)  # ConfigError for border=on without a border channel
    return instancer


def inference_options(node: Any, meta: Any = None) -> InferenceOptions:
    """``domain.inference`` (tile, overlap, batch_size, blend, band, readers) as checked options. ``tile: patch``
    is nnU-Net's sliding window: the training patch the model's data ``meta`` records (``patch_size``), with
    ``overlap: null`` a quarter of it. A model trained on small windows predicts better through windows of that size
    than through larger ones (the Landsat scene of ``segsuite benchmark recipe``, 64 px patches: held-out mIoU 0.310
    with 64 px windows, 0.285 with 512 px)."""
    values = dict(_plain(node) or {})
    values.pop("_target_", None)
    if values.get("tile") == "patch":
        patch = (meta or {}).get("patch_size")
        if not patch:
            raise ConfigError("domain.inference.tile=patch takes the training patch from the model, which records "
                              "none; give the window size, e.g. domain.inference.tile=[512,512]")
        values["tile"] = [int(p) for p in patch]
        if values.get("overlap") is None:
            values["overlap"] = [int(p) // 4 for p in patch]
    try:
        return InferenceOptions(**values)
    except TypeError as err:
        raise ConfigError(f"domain.inference: {err}; it takes tile, overlap, batch_size, blend, band and "
                          "readers") from None


def load_job(cfg: DictConfig, overwrite: bool | None = None) -> Job:
    """The model of ``cfg.runtime`` (``cfg.checkpoint`` for torch, else the exported ``cfg.model_file``), checked to
    belong to ``cfg.domain``, as a :class:`Job` for ``cfg.task``."""
    mode = Mode.parse(cfg.get("task", "semantic"))
    node = cfg.domain.get("inference")
    later = (_plain(node) or {}).get("tile") == "patch"  # needs the model's training patch
    options = None if later else inference_options(node)
    runtime = str(cfg.get("runtime") or "torch")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime={runtime!r} is not one of {', '.join(RUNTIMES)}")
    model, instancer = (checkpoint_model if runtime == "torch" else exported_model)(cfg, mode)
    options = options or inference_options(node, model.meta)
    return Job(model, mode, instancer, options, bool(cfg.overwrite if overwrite is None else overwrite))


def _check_domain(cfg: DictConfig, trained_on: str | None, path: Any, kind: str) -> None:
    if trained_on and trained_on != cfg.domain.name:
        raise ConfigError(f"{kind} {path} was trained for domain {trained_on!r}, not {cfg.domain.name!r}; run with "
                          f"domain={trained_on}")


def _tta_flips(cfg: DictConfig) -> list[int]:
    return list(cfg.domain.get("tta_flips", [])) if cfg.get("tta") else []


def _things(instancer: Instancer | None) -> tuple[str, ...]:
    return tuple(instancer.class_names[i] for i in instancer.thing_ids) if instancer else ()


def checkpoint_model(cfg: DictConfig, mode: Mode) -> tuple[ModelInfo, Instancer | None]:
    """``runtime=torch``: the checkpoint ``cfg.checkpoint`` through Lightning's task, on ``cfg.device``; several
    checkpoints (a list, or a ``segsuite cv`` folder) predict as one ensemble (:mod:`segsuite.core.ensemble`)."""
    if not cfg.get("checkpoint"):
        raise ConfigError("missing checkpoint; give it on the command line, e.g. checkpoint=outputs/train/<domain>/"
                          "<run>/checkpoints/last.ckpt (or runtime=onnx model_file=model.onnx)")
    from segsuite.core.ensemble import checkpoint_paths, ensemble_model

    paths = checkpoint_paths(_plain(cfg.checkpoint))
    if len(paths) > 1:  # checkpoint=[a.ckpt,b.ckpt] or a CV folder: their mean class probabilities
        return ensemble_model(cfg, mode, paths)
    task = _task(paths[0])
    hp = task.hparams
    _check_domain(cfg, hp.get("domain"), paths[0], "checkpoint")
    instancer = build_instancer(cfg, mode, hp, task.border_channel)
    border = instancer is not None and instancer.uses_border(task.border_channel)
    channels = hp.num_classes + int(border)
    net = task.net if channels == task.out_channels else FirstChannels(task.net, channels)
    device = device_for(Ranks.from_env(), cfg.get("device"))
    net = for_inference(net, cfg.get("compile"), device)
    predictor = TilePredictor(net, device=device, amp=cfg.get("amp", False), tta_flips=_tta_flips(cfg))
    meta = DataMeta.from_dict({"class_names": hp.class_names, "num_classes": hp.num_classes,
                               "ignore_index": hp.ignore_index, **dict(hp.get("data_meta") or {})})
    domain = hp.get("domain") or ""
    return ModelInfo(predictor, meta, channels, border, str(paths[0]), domain, _things(instancer)), instancer


def _task(path: str | os.PathLike) -> Any:
    """The checkpoint's task, read once per file version: a script calling ``predict(cfg)`` again and again (or the
    demo page) does not rebuild the network each time. Nothing modifies it: the predictor copies the network before
    changing its layout."""
    return _load_task(str(path), file_version(os.path.abspath(path)))


@functools.lru_cache(maxsize=2)
def _load_task(path: str, version: Version | None) -> Any:
    from segsuite.core.checkpoint import load_task  # imports Lightning: only on this path

    return load_task(path)


def exported_model(cfg: DictConfig, mode: Mode) -> tuple[ModelInfo, Instancer | None]:
    """``runtime=onnx|torchscript``: the file ``cfg.model_file`` written by ``scripts/export.py``, on the CPU, its
    label space and data description from the file's metadata (no Lightning, no checkpoint)."""
    from segsuite.core.runtime import load_exported

    path = cfg.get("model_file")
    if not path:
        raise ConfigError(f"runtime={cfg.runtime} needs model_file=PATH, a model written by scripts/export.py "
                          f"format={cfg.runtime}")
    predictor = load_exported(path, str(cfg.runtime), _tta_flips(cfg), _trust(cfg.get("trust_model")))
    stored = predictor.metadata
    _check_domain(cfg, stored.get("domain"), path, "model")
    has_border = bool(stored["border_channel"])
    instancer = build_instancer(cfg, mode, stored, has_border)
    border = instancer is not None and instancer.uses_border(has_border)
    meta = DataMeta.from_dict(stored["data_meta"])
    predictor.channels = meta.num_classes + int(border)
    model = ModelInfo(predictor, meta, predictor.channels, border, str(path), stored.get("domain") or "",
                      _things(instancer))
    return model, instancer


def _trust(value: Any) -> bool | str:
    """``trust_model``: true, or a sha256 (Hydra may read an all-digit one as a number)."""
    return value if isinstance(value, bool) else str(value or "")


def predict(cfg: DictConfig) -> list[Path]:
    """Predict ``cfg.input`` into ``cfg.output`` with the domain's reader and writer."""
    job = load_job(cfg)
    reader = hydra.utils.instantiate(cfg.domain.reader)
    writer = hydra.utils.instantiate(cfg.domain.writer)
    ranks = Ranks.from_env(cfg.get("distributed_timeout"))
    return run_predict(reader, writer, job, _plain(cfg.input), cfg.output, ranks)
