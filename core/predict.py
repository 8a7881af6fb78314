"""``predict(cfg)``: the Hydra face of :func:`core.pipeline.run_predict`. Loads the checkpoint into a
:class:`~core.contracts.ModelInfo`, builds the :class:`~core.contracts.Job` (mode, instancer, inference options) and
the domain's reader and writer from ``cfg.domain``, and runs the one pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from core.checkpoint import load_task
from core.contracts import DataMeta, Job, Mode, ModelInfo
from core.distributed import Ranks, device_for
from core.errors import ConfigError
from core.inference import InferenceOptions, TilePredictor
from core.instances import Instancer
from core.pipeline import run_predict


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
    for things in (node.get("things"), hparams.get("things"), cfg.domain.get("things")):
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
    instancer = hydra.utils.instantiate(node)(things=thing_classes(cfg, hparams), class_names=list(hparams.class_names))
    instancer.uses_border(has_border)  # ConfigError for border=on without a border channel
    return instancer


def inference_options(node: Any) -> InferenceOptions:
    """``domain.inference`` (tile, overlap, batch_size, blend) as checked options."""
    values = dict(_plain(node) or {})
    values.pop("_target_", None)
    try:
        return InferenceOptions(**values)
    except TypeError as err:
        raise ConfigError(f"domain.inference: {err}; it takes tile, overlap, batch_size and blend") from None


def load_job(cfg: DictConfig, overwrite: bool | None = None) -> Job:
    """The checkpoint ``cfg.checkpoint`` (checked to belong to ``cfg.domain``) as a :class:`Job` for ``cfg.task``."""
    mode = Mode.parse(cfg.get("task", "semantic"))
    options = inference_options(cfg.domain.get("inference"))
    task = load_task(cfg.checkpoint)
    hp = task.hparams
    trained_on = hp.get("domain")
    if trained_on and trained_on != cfg.domain.name:
        raise ConfigError(f"checkpoint {cfg.checkpoint} was trained for domain {trained_on!r}, not "
                          f"{cfg.domain.name!r}; run with domain={trained_on}")
    instancer = build_instancer(cfg, mode, hp, task.border_channel)
    border = instancer is not None and instancer.uses_border(task.border_channel)
    channels = hp.num_classes + int(border)
    net = task.net if channels == task.out_channels else FirstChannels(task.net, channels)
    flips = list(cfg.domain.get("tta_flips", [])) if cfg.get("tta") else []
    device = device_for(Ranks.from_env(), cfg.get("device"))
    predictor = TilePredictor(net, device=device, amp=cfg.get("amp", False), tta_flips=flips)
    meta = DataMeta.from_dict({"class_names": hp.class_names, "num_classes": hp.num_classes,
                               "ignore_index": hp.ignore_index, **dict(hp.get("data_meta") or {})})
    things = tuple(instancer.class_names[i] for i in instancer.thing_ids) if instancer else ()
    model = ModelInfo(predictor, meta, channels, border, str(cfg.checkpoint), hp.get("domain") or "", things)
    return Job(model, mode, instancer, options, bool(cfg.overwrite if overwrite is None else overwrite))


def predict(cfg: DictConfig) -> list[Path]:
    """Predict ``cfg.input`` into ``cfg.output`` with the domain's reader and writer."""
    job = load_job(cfg)
    reader = hydra.utils.instantiate(cfg.domain.reader)
    writer = hydra.utils.instantiate(cfg.domain.writer)
    return run_predict(reader, writer, job, _plain(cfg.input), cfg.output)
