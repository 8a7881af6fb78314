"""FCN-32s/16s/8s (Long, Shelhamer & Darrell, 2015) on top of any smp encoder's feature pyramid."""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

_SKIPS = {"32s": 0, "16s": 1, "8s": 2}  # how many finer pyramid levels are fused in


def _bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights that make a ConvTranspose2d start as bilinear upsampling (as in the paper)."""
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = torch.from_numpy(filt).float()
    return weight


class _Up2(nn.ConvTranspose2d):
    """Learnable 2x upsampling initialised to bilinear interpolation."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=4, stride=2, padding=1, bias=False)
        with torch.no_grad():
            self.weight.copy_(_bilinear_kernel(channels, 2))


class FCN(nn.Module):
    """Fully convolutional network with score layers and skip fusion.

    The stride-32 encoder features go through a convolutional classifier ("fc6/fc7" as 3x3 and 1x1 convs);
    FCN-16s adds a 1x1 score of the stride-16 features after a learnable 2x upsampling, FCN-8s also the
    stride-8 ones. The fused scores are upsampled bilinearly to the input size. Skip score layers start at
    zero, so an untrained FCN-8s equals FCN-32s, as in the paper's staged training.

    Shape:
        input (B, in_channels, H, W), H and W multiples of 32 -> logits (B, classes, H, W).
    """

    def __init__(
        self,
        encoder_name: str = "resnet18",
        encoder_weights: str | None = None,
        in_channels: int = 3,
        classes: int = 2,
        variant: str = "8s",
        head_channels: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if variant not in _SKIPS:
            raise ValueError(f"unknown FCN variant {variant!r}; choose one of {sorted(_SKIPS)}")
        self.variant = variant
        self.encoder = smp.encoders.get_encoder(encoder_name, in_channels=in_channels, depth=5,
                                                weights=encoder_weights)
        self.output_stride = 32
        chans = self.encoder.out_channels  # strides 1, 2, 4, 8, 16, 32
        self.classifier = nn.Sequential(
            nn.Conv2d(chans[-1], head_channels, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(head_channels, head_channels, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(head_channels, classes, 1),
        )
        n_skips = _SKIPS[variant]
        self.skip_scores = nn.ModuleList(nn.Conv2d(chans[-2 - i], classes, 1) for i in range(n_skips))
        self.upsamplers = nn.ModuleList(_Up2(classes) for _ in range(n_skips))
        for score in self.skip_scores:
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        score = self.classifier(features[-1])  # (B, K, H/32, W/32)
        for i, (skip, up) in enumerate(zip(self.skip_scores, self.upsamplers)):
            finer = skip(features[-2 - i])  # (B, K, H/16, W/16), then H/8
            score = up(score)[..., : finer.shape[-2], : finer.shape[-1]] + finer
        return F.interpolate(score, size=x.shape[-2:], mode="bilinear", align_corners=False)
