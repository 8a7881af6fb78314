"""`create_model`: one factory (and Hydra `_target_`) for every architecture the suite offers."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from segsuite.core.errors import ConfigError
from segsuite.core.models.fcn import FCN
from segsuite.core.models.pretrained import is_weights_file, load_encoder_weights, skip_pretrained

_SMP = dict(smp.MODEL_ARCHITECTURES_MAPPING)  # {"unet": smp.Unet, ...}
_FCN = {"fcn32s": "32s", "fcn16s": "16s", "fcn8s": "8s", "fcn": "8s"}
ARCHITECTURES: list[str] = sorted(_SMP) + sorted(_FCN)
_MIN_SIZE = {"pan": 128}  # PAN's feature-pyramid attention needs >= 4 pixels at stride 32


class PadToStride(nn.Module):
    """Pad the input up to a multiple of the network's stride (and its minimum size), run it, crop back.

    ``stride`` is one int for every spatial axis or one per axis (e.g. a 3D U-Net pooling a thick-slice axis less).

    Shape:
        input (B, C, *S) with any spatial size S (H, W or D, H, W) -> output (B, K, *S).
    """

    def __init__(self, net: nn.Module, stride: int | Sequence[int], min_size: int = 0) -> None:
        super().__init__()
        self.net = net
        self.stride = stride
        self.min_size = min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        strides = [self.stride] * len(size) if isinstance(self.stride, int) else self.stride
        pads = [max(-n % s, self.min_size - n) for n, s in zip(size, strides)]
        if any(pads):
            x = F.pad(x, [p for pad in reversed(pads) for p in (0, pad)], mode="replicate")
        return self.net(x)[(..., *[slice(0, n) for n in size])]


def _check_names(arch: str, encoder_name: str) -> None:
    if arch.lower() not in ARCHITECTURES:
        raise ConfigError(f"unknown model architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if encoder_name.startswith("tu-"):
        import timm

        if not timm.is_model(encoder_name[3:]):
            raise ConfigError(f"unknown timm encoder {encoder_name!r} (no timm model named {encoder_name[3:]!r})")
        return
    names = smp.encoders.get_encoder_names()
    if encoder_name not in names:
        close = difflib.get_close_matches(encoder_name, names, n=5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"unknown encoder {encoder_name!r}; {hint}valid encoders are the segmentation-models-pytorch "
            f"encoders ({', '.join(sorted(names)[:8])}, ... {len(names)} in all) or any timm model as 'tu-NAME'"
        )


def create_model(
    arch: str = "unet",
    encoder_name: str = "resnet18",
    encoder_weights: str | None = None,
    in_channels: int = 3,
    classes: int = 2,
    **kwargs,
) -> nn.Module:
    """Build a segmentation network by name.

    Args:
        arch: an smp architecture (``unet``, ``unetplusplus``, ``fpn``, ``deeplabv3plus``, ...) or
            ``fcn32s`` / ``fcn16s`` / ``fcn8s`` (``fcn`` is FCN-8s). Case-insensitive.
        encoder_name: an smp encoder (``resnet18``, ``efficientnet-b0``, ...) or ``tu-<timm name>``.
        encoder_weights: ``None`` (default: nothing is downloaded), a weights name such as ``imagenet`` (a hub
            download), or the path of a timm/torchvision backbone's state dict on disk
            (:mod:`segsuite.core.models.pretrained`). Ignored while the network is rebuilt to receive a
            checkpoint's trained weights (:func:`~segsuite.core.models.pretrained.trained_weights_follow`).
        in_channels: input channels (any number; pretrained first convs are adapted as smp does).
        classes: output channels (one logit map per class).
        **kwargs: passed to the architecture's constructor.

    Returns:
        A module mapping (B, in_channels, H, W) to logits (B, classes, H, W) for any H, W.
    """
    _check_names(arch, encoder_name)
    key = arch.lower()
    weights_file = encoder_weights if is_weights_file(encoder_weights) else None
    if weights_file is not None or skip_pretrained():
        encoder_weights = None  # built bare: the file is loaded below, or trained weights follow
    if key in _FCN:
        net: nn.Module = FCN(encoder_name, encoder_weights, in_channels, classes, variant=_FCN[key], **kwargs)
    else:
        try:
            net = smp.create_model(key, encoder_name=encoder_name, encoder_weights=encoder_weights,
                                   in_channels=in_channels, classes=classes, **kwargs)
        except (TypeError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot build {arch!r} with encoder {encoder_name!r}: {err}") from err
    if weights_file is not None and not skip_pretrained():
        load_encoder_weights(net.encoder, weights_file)
    return PadToStride(net, _stride(net), _MIN_SIZE.get(key, 0))


def _stride(net: nn.Module) -> int:
    """The factor input sizes are padded to: 32, or the encoder's output stride if larger. (Dilated encoders
    report 8 or 16, but e.g. DPT's decoder still needs 32.)"""
    encoder = getattr(net, "encoder", None)
    return max(32, int(getattr(encoder, "output_stride", 32)))
