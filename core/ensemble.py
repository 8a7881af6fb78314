"""Ensembles: several checkpoints predicting as one model (``segsuite predict checkpoint=[a.ckpt,b.ckpt]`` or
``checkpoint=CV_FOLDER``, the best checkpoint of every fold of ``segsuite cv``).

:class:`StackedLogits` runs every model on the same window and returns their class logits side by side
(``M * K`` channels); the engine blends each model's logits over overlapping windows exactly as it blends a single
model's (one strip per model: the only memory an ensemble adds), and :func:`mean_probabilities` then turns each
finished block into ``log(mean_m softmax(blended logits_m))`` before anything else sees it (``ModelInfo.combine``).
So every softmax downstream (probability rasters, confidence, the argmax, MRI's resampling back to the input grid,
which is linear) sees exactly the mean of the single models' probabilities, overlaps included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segsuite.core.errors import ConfigError

TINY = 1e-12  # a probability floor before the log (float32 softmax underflows to 0 far from a decision)


class StackedLogits(nn.Module):
    """Maps (B, C, *S) to the first ``k`` channels of every net, side by side: (B, M * k, *S) float32."""

    def __init__(self, nets: Sequence[nn.Module], k: int) -> None:
        super().__init__()
        if not nets:
            raise ConfigError("an ensemble needs at least one model")
        self.nets, self.k = nn.ModuleList(nets), int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(x)[:, : self.k].float() for net in self.nets], 1)


class MeanProbabilities(nn.Module):
    """An ensemble as one network, the form ``segsuite export checkpoint=[...]`` writes: (B, C, *S) ->
    ``log(mean_m softmax(net_m(x)))`` (B, k, *S) per window, which runtimes treat as one model's logits.

    Overlapping windows are then blended as one model's logits are; ``checkpoint=[...]`` in predict blends each
    model's logits before averaging, so the two agree exactly where windows do not overlap and closely where they do.
    """

    def __init__(self, nets: Sequence[nn.Module], k: int) -> None:
        super().__init__()
        self.stacked, self.models = StackedLogits(nets, k), len(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_model = self.stacked(x).unflatten(1, (self.models, -1))  # (B, M, k, *S)
        return per_model.softmax(2).mean(1).clamp_min(TINY).log()


def mean_probabilities(logits: torch.Tensor, models: int) -> torch.Tensor:
    """Blended ``(M * K, *S)`` logits of ``models`` models -> ``(K, *S)``: the log of their mean softmax, so that
    ``softmax(result, 0)`` is the mean of the models' class probabilities."""
    per_model = logits.float().reshape(models, -1, *logits.shape[1:])  # (M, K, *S)
    return per_model.softmax(1).mean(0).clamp_min_(TINY).log_()


def checkpoint_paths(value: Any) -> list[Path]:
    """The checkpoints of ``checkpoint=``: one file, a list of files, or a cross-validation folder (every
    ``fold_K`` best checkpoint from its ``metrics.json``)."""
    values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    paths: list[Path] = []
    for v in values:
        path = Path(str(v))
        paths += fold_checkpoints(path) if path.is_dir() else [path]
    if len(set(paths)) != len(paths):
        raise ConfigError(f"checkpoint={[str(p) for p in paths]} names a checkpoint twice")
    return paths


def fold_checkpoints(folder: Path) -> list[Path]:
    """The best checkpoint of every fold of a ``segsuite cv`` folder (``fold_K/metrics.json``: ``best_checkpoint``,
    else ``last_checkpoint``)."""
    import json

    found = sorted(folder.glob("fold_*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not found:
        raise ConfigError(f"checkpoint={folder} is a folder without fold_*/metrics.json; give checkpoint files "
                          "(checkpoint=[a.ckpt,b.ckpt]) or a folder written by segsuite cv")
    out = []
    for metrics in found:
        saved = json.loads(metrics.read_text(encoding="utf-8"))
        path = Path(saved.get("best_checkpoint") or saved.get("last_checkpoint") or "")
        if not path.is_file():  # a moved CV folder: the same name beside metrics.json
            path = metrics.parent / "checkpoints" / path.name
        out.append(path)
    return out


KEYS = (("domain", "domain"), ("class_names", "classes"), ("num_classes", "classes"))


def check_members(hparams: Sequence[Any], paths: Sequence[Path], in_channels: Sequence[int]) -> None:
    """The models of an ensemble share domain, classes and input channels (one line naming the first that
    differs otherwise)."""
    first = hparams[0]
    for hp, path, channels in zip(hparams[1:], paths[1:], in_channels[1:], strict=True):
        for key, what in KEYS:
            if hp.get(key) != first.get(key):
                raise ConfigError(f"checkpoint {path} differs from {paths[0]} in its {what} ({hp.get(key)!r} vs "
                                  f"{first.get(key)!r}); an ensemble needs models of one domain, classes and "
                                  "channels")
        if channels != in_channels[0]:
            raise ConfigError(f"checkpoint {path} takes {channels} input channels, {paths[0]} {in_channels[0]}; an "
                              "ensemble needs models of one domain, classes and channels")


UNSAID = {"spatial_dims": 2}  # what a checkpoint that does not record the key was trained with
INPUT_KEYS = ("in_channels", "channels", "bands", "band_names", "spatial_dims", "target_spacing", "train_scale")


class Renormalised(nn.Module):
    """``net`` fed inputs normalised with another model's statistics: ``x * scale + shift`` per channel first
    (so a fold trained on other band statistics sees its own normalisation)."""

    def __init__(self, net: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return self.net(x * self.scale.view(shape) + self.shift.view(shape))


def adapt_input(net: nn.Module, reference: dict[str, Any], own: dict[str, Any], path: Path) -> nn.Module:
    """``net`` (trained on data ``own``) taking inputs prepared for ``reference``: the same input preparation is
    required (channels, bands, grid); mean/std normalisations that differ are converted (:class:`Renormalised`)."""
    for key in INPUT_KEYS:
        if reference.get(key, UNSAID.get(key)) != own.get(key, UNSAID.get(key)):
            raise ConfigError(f"checkpoint {path} prepares its inputs differently ({key}: {own.get(key)!r} vs "
                              f"{reference.get(key)!r}); an ensemble needs models fed the same inputs")
    ref, mine = reference.get("normalization") or {}, own.get("normalization") or {}
    if ref == mine:
        return net
    rest = ({k: v for k, v in ref.items() if k not in ("mean", "std")},
            {k: v for k, v in mine.items() if k not in ("mean", "std")})
    if rest[0] != rest[1] or not all(isinstance(d.get(k), list) for d in (ref, mine) for k in ("mean", "std")):
        raise ConfigError(f"checkpoint {path} normalises its inputs differently ({mine} vs {ref}); an ensemble "
                          "needs models fed the same inputs")
    m0, s0, m1, s1 = (torch.tensor(v, dtype=torch.float32) for v in (ref["mean"], ref["std"], mine["mean"],
                                                                     mine["std"]))
    return Renormalised(net, s0 / s1, (m0 - m1) / s1)


def ensemble_model(cfg: Any, mode: Any, paths: Sequence[Path]) -> tuple[Any, None]:
    """``runtime=torch`` with several checkpoints: one :class:`~segsuite.core.contracts.ModelInfo` whose predictor
    runs :class:`StackedLogits` over them, its ``combine`` averaging their probabilities (semantic only)."""
    from segsuite.core.compiled import for_inference
    from segsuite.core.contracts import DataMeta, Mode, ModelInfo
    from segsuite.core.distributed import Ranks, device_for
    from segsuite.core.inference import TilePredictor
    from segsuite.core.predict import _check_domain, _task, _tta_flips

    if mode is not Mode.SEMANTIC:
        raise ConfigError(f"task={mode.value}: an ensemble predicts semantic classes only; use task=semantic")
    tasks = [_task(p) for p in paths]  # read once per file version (core/predict.py), never modified here
    hps = [t.hparams for t in tasks]
    for hp, path in zip(hps, paths, strict=True):
        _check_domain(cfg, hp.get("domain"), path, "checkpoint")
    check_members(hps, paths, [int(hp["model"].get("in_channels") or -1) for hp in hps])
    metas = [dict(hp.get("data_meta") or {}) for hp in hps]
    nets = [adapt_input(t.net, metas[0], meta, p) for t, meta, p in zip(tasks, metas, paths, strict=True)]
    k = int(hps[0].num_classes)
    device = device_for(Ranks.from_env(), cfg.get("device"))
    net = for_inference(StackedLogits(nets, k), cfg.get("compile"), device)
    predictor = TilePredictor(net, device=device, amp=cfg.get("amp", False),
                              tta_flips=_tta_flips(cfg))
    first = hps[0]
    meta = DataMeta.from_dict({"class_names": first.class_names, "num_classes": k,
                               "ignore_index": first.ignore_index, **metas[0]})
    source = "+".join(str(p) for p in paths)
    combine = partial(mean_probabilities, models=len(nets))
    return ModelInfo(predictor, meta, k, False, source, first.get("domain") or "", (), len(nets) * k, combine), None
