"""nnU-Net's default training augmentation for 2D and 3D samples, with MONAI dictionary transforms.

:class:`NnUNetAugmentation` holds settings only (a domain's augmentation config builds it). A training dataset turns
it into a transform for its samples with :meth:`NnUNetAugmentation.transform`, naming the sample dims that may be
mirrored (a domain decides which keep the labels' meaning). Samples are ``{"image": (C, *S), "mask": S}`` tensors
with S = (H, W) slices or (X, Y, Z) patches; the dataset crops a window :meth:`NnUNetAugmentation.margin` larger on
each side, so rotated and scaled patches are filled with data rather than padding, and the transform returns the
patch size.

In order (nnU-Net's): rotation and scaling (one ``RandAffined``: bilinear image, nearest mask; zero outside, i.e.
background), optional elastic deformation, Gaussian noise, Gaussian blur, brightness, contrast, simulated low
resolution, gamma (also on the inverted image), flips. Rotation is in-plane for 2D samples; for 3D samples about
every axis, or only about the coarse axis of anisotropic data (spacing ratio above 3, nnU-Net's "dummy 2D").
Randomness is drawn from torch's global generator (one seed per sample for MONAI), so samples follow
``torch.manual_seed`` and DataLoader's per-worker seeding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai import transforms as T

from segsuite.core.errors import ConfigError
from segsuite.core.plan3d import ANISOTROPY_RATIO

MAX_SEED = 2**31 - 1


@dataclass
class NnUNetAugmentation:
    """Augmentation settings (probabilities per sample; ranges as ``[low, high]``). See the module docstring."""

    rotate_prob: float = 0.2
    rotate_deg: float = 30.0
    scale_prob: float = 0.2
    scale_range: Sequence[float] = (0.7, 1.4)
    elastic_prob: float = 0.0
    elastic_range: float = 0.1
    elastic_grid: int = 5
    flip_prob: float = 0.5
    noise_prob: float = 0.1
    noise_std: float = 0.1
    blur_prob: float = 0.2
    blur_sigma: Sequence[float] = (0.5, 1.0)
    brightness_prob: float = 0.15
    brightness_range: Sequence[float] = (0.75, 1.25)
    contrast_prob: float = 0.15
    contrast_range: Sequence[float] = (0.75, 1.25)
    lowres_prob: float = 0.25
    lowres_zoom: Sequence[float] = (0.5, 1.0)
    gamma_prob: float = 0.3
    gamma_inverted_prob: float = 0.1
    gamma_range: Sequence[float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        probs = {k: v for k, v in vars(self).items() if k.endswith("_prob")}
        bad = {k: v for k, v in probs.items() if not 0 <= float(v) <= 1}
        if bad:
            raise ConfigError(f"augmentation probabilities must be in [0, 1], got {bad}")

    @property
    def spatial(self) -> bool:
        return self.rotate_prob > 0 or self.scale_prob > 0

    def margin(self, patch_size: Sequence[int]) -> list[int]:
        """Voxels to crop beyond the patch on each side so rotation and scaling find data: the patch's extent
        rotated by ``rotate_deg`` and scaled by the largest factor (nnU-Net's enlarged patch), at most doubled."""
        if not self.spatial:
            return [0] * len(patch_size)
        angle = math.radians(min(abs(self.rotate_deg), 45.0)) if self.rotate_prob > 0 else 0.0
        factor = (math.cos(angle) + math.sin(angle)) * (max(1.0, self.scale_range[1]) if self.scale_prob > 0 else 1)
        return [math.ceil(p * (min(factor, 2.0) - 1) / 2) for p in patch_size]

    def transform(self, flips: Sequence[int], patch_size: Sequence[int], spacing: Sequence[float] | None = None
                  ) -> Callable[[dict], dict]:
        """The transform for samples of ``len(patch_size)`` spatial dims, cropped to ``patch_size``, mirrored along
        the sample dims ``flips``; ``spacing`` (per sample dim) tells 3D rotation whether the data are anisotropic."""
        dims = len(patch_size)
        transforms = [self._spatial(dims, patch_size, spacing)]
        transforms += [t for t in self._intensity(dims) if t is not None]
        transforms += [T.RandFlipd(["image", "mask"], prob=self.flip_prob, spatial_axis=d) for d in flips
                       if self.flip_prob > 0]
        return SampleTransform(T.Compose(transforms))

    def _spatial(self, dims: int, patch_size: Sequence[int], spacing: Sequence[float] | None):
        """``RandAffined`` cropping to the patch; rotation and scaling drawn independently per sample."""
        angle = math.radians(self.rotate_deg)
        if dims == 2:
            rotation = (angle,)
        elif spacing is not None and max(spacing) > ANISOTROPY_RATIO * min(spacing):
            coarse = max(range(3), key=lambda d: spacing[d])
            rotation = tuple(angle if d == coarse else 0.0 for d in range(3))
        else:
            rotation = (angle,) * 3
        low, high = self.scale_range
        scale = (low - 1, high - 1)
        common = dict(keys=["image", "mask"], spatial_size=list(patch_size), prob=1.0, mode=["bilinear", "nearest"],
                      padding_mode="zeros")
        options = {
            (True, True): T.RandAffined(**common, rotate_range=rotation, scale_range=scale),
            (True, False): T.RandAffined(**common, rotate_range=rotation),
            (False, True): T.RandAffined(**common, scale_range=scale),
            (False, False): T.CenterSpatialCropd(["image", "mask"], roi_size=list(patch_size)),
        }
        elastic = None
        if self.elastic_prob > 0:  # a smooth random displacement field from an elastic_grid^dims control grid
            elastic = T.RandSmoothDeformd(["image", "mask"], spatial_size=list(patch_size),
                                          rand_size=[self.elastic_grid] * dims, def_range=self.elastic_range,
                                          prob=self.elastic_prob, grid_mode=["bilinear", "nearest"])
        return _Spatial(options, self.rotate_prob, self.scale_prob, elastic)

    def _intensity(self, dims: int) -> list:
        image = ["image"]
        sigma = tuple(self.blur_sigma)
        return [
            T.RandGaussianNoised(image, prob=self.noise_prob, std=self.noise_std),
            T.RandGaussianSmoothd(image, sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=self.blur_prob),
            T.RandScaleIntensityd(image, factors=tuple(f - 1 for f in self.brightness_range),
                                  prob=self.brightness_prob),
            T.RandScaleIntensityFixedMeand(image, factors=tuple(f - 1 for f in self.contrast_range),
                                           preserve_range=True, prob=self.contrast_prob),
            T.RandSimulateLowResolutiond(image, prob=self.lowres_prob, zoom_range=tuple(self.lowres_zoom),
                                         upsample_mode="trilinear" if dims == 3 else "bilinear"),
            T.RandAdjustContrastd(image, prob=self.gamma_inverted_prob, gamma=tuple(self.gamma_range),
                                  invert_image=True, retain_stats=True),
            T.RandAdjustContrastd(image, prob=self.gamma_prob, gamma=tuple(self.gamma_range), retain_stats=True),
        ]


class _Spatial(T.Randomizable):
    """Rotation with probability ``p_rotate`` and scaling with ``p_scale``, independently, in one resampling (one of
    four prepared ``RandAffined``s), then the optional elastic deformation."""

    def __init__(self, options: dict, p_rotate: float, p_scale: float, elastic=None) -> None:
        self.options, self.p_rotate, self.p_scale, self.elastic = options, p_rotate, p_scale, elastic

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        for t in [*self.options.values(), self.elastic]:
            if isinstance(t, T.Randomizable):
                t.set_random_state(seed=int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data=None) -> None:
        self._key = (bool(self.R.rand() < self.p_rotate), bool(self.R.rand() < self.p_scale))

    def __call__(self, sample: dict) -> dict:
        self.randomize()
        sample = self.options[self._key](sample)
        return self.elastic(sample) if self.elastic is not None else sample


class SampleTransform:
    """Applies a MONAI ``Compose`` to a sample with randomness from torch's generator; returns plain tensors
    (image float32, mask int64)."""

    def __init__(self, compose: T.Compose) -> None:
        self.compose = compose

    def __call__(self, sample: dict) -> dict:
        self.compose.set_random_state(seed=int(torch.randint(MAX_SEED, ())))
        out = self.compose({"image": sample["image"], "mask": sample["mask"][None].float()})
        image, mask = (torch.as_tensor(out[k]).as_subclass(torch.Tensor) for k in ("image", "mask"))
        return {**sample, "image": image.float().contiguous(), "mask": mask[0].round().long().contiguous()}
