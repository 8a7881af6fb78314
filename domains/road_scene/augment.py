"""Training augmentation of a road frame (torchvision v2 transforms on tv_tensors, so image, mask and instances
share every random draw)."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


class TrainAugment:
    """Training augmentation of an image ``(3, H, W)`` in [0, 1], its mask ``(H, W)`` and optionally instances
    ``(H, W)``: random scale (nearest for mask and instances), pad (image 0, mask ignore, instances 0) + random crop
    to ``crop_size`` (skipped when None), horizontal flip, colour jitter (image only)."""

    def __init__(self, crop_size: list[int] | None, scale_range: list[float], train_scale: float, hflip_prob: float,
                 color_jitter: list[float], ignore_index: int) -> None:
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.ignore_index = int(ignore_index)
        self.train_scale = float(train_scale)
        fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: ignore_index}
        self.crop = None if crop_size is None else v2.RandomCrop(list(crop_size), pad_if_needed=True, fill=fill)
        self.flip = v2.RandomHorizontalFlip(hflip_prob)
        self.jitter = v2.ColorJitter(*color_jitter)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 instances: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(image, mask)``, or ``(image, mask, instances)`` when ``instances`` is given; the same random draws
        either way."""
        labels = [tv_tensors.Mask(mask)] + ([] if instances is None else [tv_tensors.Mask(instances)])
        image = tv_tensors.Image(image)
        lo, hi = self.scale_range
        factor = self.train_scale * float(torch.empty(()).uniform_(lo, hi))
        size = [max(1, round(image.shape[-2] * factor)), max(1, round(image.shape[-1] * factor))]
        image = v2.functional.resize(image, size, antialias=True)
        # nearest with pixel-centre alignment, matching the image's resampling grid
        labels = [v2.functional.resize(m, size, interpolation=v2.InterpolationMode.NEAREST_EXACT) for m in labels]
        if self.crop is not None:
            image, *labels = self.crop(image, *labels)
        image, *labels = self.flip(image, *labels)
        if instances is not None:  # padding got the mask's ignore fill: no instance there
            labels[1] = labels[1].masked_fill(labels[0] == self.ignore_index, 0)
        return self.jitter(image).clamp_(0.0, 1.0), *labels
