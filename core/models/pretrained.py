"""Encoder weights from a file on disk: ``model.encoder_weights=PATH`` instead of a hub download.

The file is a timm or torchvision backbone's state dict (``torch.save(model.state_dict(), path)``, or a safetensors
file), bare or wrapped (``{"state_dict": ...}``, ``{"model": ...}``), its keys possibly prefixed (``module.``,
``backbone.``, ``encoder.``: a whole segmentation model's encoder part is taken). It is read as data only
(``weights_only``), never as pickled code. Classifier keys (``fc.``, ``head.``, ``classifier.``) are dropped, the
first convolution is adapted to the band count as smp adapts its own pretrained weights
(:func:`segmentation_models_pytorch.encoders._utils.patch_first_conv`: one band sums the RGB filters, more bands
repeat them cyclically scaled by 3/C), and every encoder tensor must be found with its shape, else one ConfigError
names the file and a few of the keys.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from segmentation_models_pytorch.encoders._utils import patch_first_conv
from torch import nn

from segsuite.core.errors import ConfigError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_WRAPPERS = ("state_dict", "model", "model_state_dict", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.", "encoder.")
_CLASSIFIERS = ("fc.", "head.", "classifier.", "last_linear.", "_fc.", "heads.")
_SHOWN = 4  # keys named in an error

_skip_files: contextvars.ContextVar[bool] = contextvars.ContextVar("segsuite_skip_weight_files", default=False)


@contextlib.contextmanager
def trained_weights_follow() -> Iterator[None]:
    """Networks built inside are about to receive trained weights (a checkpoint): their encoder weights file, which
    may be gone by now, is not read (nor any pretrained weights downloaded)."""
    token = _skip_files.set(True)
    try:
        yield
    finally:
        _skip_files.reset(token)


def skip_pretrained() -> bool:
    """Whether :func:`trained_weights_follow` is in force."""
    return _skip_files.get()


def is_weights_file(value: Any) -> bool:
    """Whether ``encoder_weights`` names a file (a path, or a name with a weights suffix) rather than a hub name
    such as ``imagenet``."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    return os.sep in text or "/" in text or text.lower().endswith(WEIGHT_SUFFIXES) or Path(text).is_file()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped; a ConfigError naming the file for anything else."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.encoder_weights: file {path} does not exist (give a timm/torchvision state dict "
                          "saved with torch.save, or null, or imagenet)")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise many kinds
        code = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if code:
            raise ConfigError(f"model.encoder_weights: {path} needs code unpickled ({code.group(1)}), which is "
                              "refused; save only tensors: torch.save(backbone.state_dict(), path)") from None
        why = str(err).split("error:")[-1].strip().splitlines()[0][:120] if "error:" in str(err) else str(err)[:120]
        raise ConfigError(f"model.encoder_weights: cannot read {path} as a torch or safetensors state dict "
                          f"({why.splitlines()[0] if why else type(err).__name__})") from None
    for _ in range(3):  # {"state_dict": {...}}, {"model": {"state_dict": ...}}
        if isinstance(data, Mapping) and not _tensors(data):
            inner = next((data[k] for k in _WRAPPERS if isinstance(data.get(k), Mapping)), None)
            if inner is None:
                break
            data = inner
    tensors = _tensors(data) if isinstance(data, Mapping) else {}
    if not tensors:
        raise ConfigError(f"model.encoder_weights: {path} holds no state dict of tensors (nor under "
                          f"{', '.join(_WRAPPERS)})")
    return tensors


def _tensors(mapping: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in mapping.items() if isinstance(v, torch.Tensor)}


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the prefixes every key shares (``module.``...), keep only the encoder of a whole segmentation model, and
    drop classifier keys."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state, changed = {k[len(prefix):]: v for k, v in state.items()}, True
    for part in ("encoder.", "backbone."):  # a segmentation model: encoder.*, decoder.*, segmentation_head.*
        inner = {k[len(part):]: v for k, v in state.items() if k.startswith(part)}
        if inner:
            state = inner
            break
    return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIERS) and not k.endswith("num_batches_tracked")}


def _candidates(key: str) -> tuple[str, ...]:
    """Names a file key may have in the encoder: itself, under smp's timm wrapper (``model.``), and with timm's
    ``features_only`` flattening of sequential stages (``stages.0.x`` -> ``stages_0.x``)."""
    flat = key.replace(".", "_", 1)
    return key, f"model.{key}", f"model.{flat}", flat


def _adapt_first_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A pretrained first convolution ``(O, 3, k, k)`` for ``channels`` inputs, by smp's own rule."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=False)
    conv.weight = nn.Parameter(weight.detach().clone().float())
    patch_first_conv(conv, channels, default_in_channels=weight.shape[1], pretrained=True)
    return conv.weight.detach().to(weight.dtype)


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> None:
    """Load the weights file ``path`` into ``encoder`` (see the module docstring); a ConfigError for a file that does
    not fit it, naming the file and a few keys."""
    target = encoder.state_dict()
    wanted = {k: v for k, v in target.items() if not k.endswith("num_batches_tracked")}
    first_conv = next((k for k, v in wanted.items() if v.ndim == 4), None)
    state = _strip(read_state_dict(path))
    loaded: dict[str, torch.Tensor] = {}
    unused, wrong = [], []
    for key, value in state.items():
        name = next((c for c in _candidates(key) if c in wanted), None)
        if name is None:
            unused.append(key)
            continue
        expected = wanted[name].shape
        if name == first_conv and value.ndim == 4 and value.shape[1] != expected[1] \
                and (value.shape[0], *value.shape[2:]) == (expected[0], *expected[2:]):
            value = _adapt_first_conv(value, expected[1])
        if value.shape != expected:
            wrong.append(f"{key} {tuple(value.shape)} vs {tuple(expected)}")
            continue
        loaded[name] = value
    if not loaded:
        raise ConfigError(f"model.encoder_weights: no tensor of {path} matches the encoder (file keys "
                          f"{', '.join(list(state)[:_SHOWN])}, ...; encoder keys {', '.join(list(wanted)[:_SHOWN])}, "
                          "...): is it a checkpoint of this encoder?")
    missing = [k for k in wanted if k not in loaded]
    if wrong or missing:
        detail = f"shapes differ: {'; '.join(wrong[:_SHOWN])}" if wrong else ""
        detail += ("; " if wrong and missing else "") + (
            f"{len(missing)} encoder tensor(s) missing: {', '.join(missing[:_SHOWN])}" if missing else "")
        raise ConfigError(f"model.encoder_weights: {path} does not fit the encoder ({detail}): a checkpoint of "
                          "another backbone or depth?")
    if unused:
        log.warning("encoder weights %s: %d tensor(s) not used by the encoder (%s)", path, len(unused),
                    ", ".join(unused[:_SHOWN]))
    encoder.load_state_dict(loaded, strict=False)
    log.info("encoder weights loaded from %s (%d tensors)", path, len(loaded))
