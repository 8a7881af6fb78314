"""A self-configuring U-Net (MONAI's ``DynUNet``) laid out from a patch size and a voxel spacing, as nnU-Net does.

:func:`topology` is nnU-Net's rule (``get_pool_and_conv_props``, rewritten): at each stage, pool (stride 2) every
axis whose feature map is still at least ``2 * min_feature_size`` voxels long and whose current spacing is within a
factor 2 of the finest one, so a coarse (anisotropic) axis waits until the others have caught up; a lone axis pools
only while it is at least ``3 * min_feature_size`` long. Convolution kernels are 3 along axes within a factor 2 of
the finest current spacing and 1 along coarser ones (no mixing across thick slices at full resolution); the
bottleneck is 3 everywhere. The patch must be divisible by ``2 ** pools`` per axis; :func:`topology` rounds it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from segsuite.core.errors import ConfigError
from segsuite.core.models.factory import PadToStride

MIN_FEATURE_SIZE = 4  # shortest edge of a bottleneck feature map (nnU-Net's UNet_featuremap_min_edge_length)


@dataclass
class Topology:
    """Per stage ``kernels`` and ``strides`` (first stride all 1), the divisor per axis and the rounded patch."""

    kernels: list[list[int]]
    strides: list[list[int]]
    divisor: list[int]
    patch_size: list[int]


def topology(spacing: Sequence[float], patch_size: Sequence[int], min_feature_size: int = MIN_FEATURE_SIZE) -> Topology:
    """The stages of a U-Net for patches of ``patch_size`` voxels of ``spacing`` mm (see the module docstring)."""
    if len(spacing) != len(patch_size) or any(s <= 0 for s in spacing) or any(int(p) < 1 for p in patch_size):
        raise ConfigError(f"patch_size {list(patch_size)} and spacing {list(spacing)} must be positive, one per axis")
    dims = len(spacing)
    current_spacing, size = [float(s) for s in spacing], [int(p) for p in patch_size]
    pools = [0] * dims
    kernels, strides = [], [[1] * dims]
    kernel = [1] * dims
    while True:
        axes = [d for d in range(dims) if size[d] >= 2 * min_feature_size]
        if not axes:
            break
        finest = min(current_spacing[d] for d in axes)
        axes = [d for d in axes if current_spacing[d] / finest < 2]
        if len(axes) == 1 and size[axes[0]] < 3 * min_feature_size:
            break
        finest_all = min(current_spacing)
        kernel = [3 if k == 3 or current_spacing[d] / finest_all < 2 else 1 for d, k in enumerate(kernel)]
        kernels.append(list(kernel))
        strides.append([2 if d in axes else 1 for d in range(dims)])
        for d in axes:
            pools[d] += 1
            current_spacing[d] *= 2
            size[d] = -(-size[d] // 2)
    kernels.append([3] * dims)
    divisor = [2**p for p in pools]
    rounded = [-(-int(p) // q) * q for p, q in zip(patch_size, divisor)]
    return Topology(kernels, strides, divisor, rounded)


def create_dynunet(
    in_channels: int,
    classes: int,
    patch_size: Sequence[int] | None,
    spacing: Sequence[float] | None,
    spatial_dims: int = 3,
    base_filters: int = 32,
    max_filters: int = 320,
    norm: str = "instance",
) -> nn.Module:
    """nnU-Net's plain U-Net as a MONAI ``DynUNet`` (no deep supervision), laid out by :func:`topology`.

    Args:
        in_channels, classes: input channels and output logits.
        patch_size, spacing: the training patch (voxels) and its voxel spacing (mm), one per spatial axis; with
            ``model=unet3d`` both come from the data's plan when left null.
        spatial_dims: 3 (volumes) or 2 (slices).
        base_filters, max_filters: features of the first stage, doubled per stage up to ``max_filters``.
        norm: MONAI norm name (``instance`` as nnU-Net, or ``batch``).

    Returns:
        A module mapping (B, in_channels, *S) to logits (B, classes, *S) for any spatial size S (inputs are padded
        to the network's divisor and the output cropped back).

    Shape:
        (B, C, D, H, W) -> (B, K, D, H, W) for ``spatial_dims=3``.
    """
    if patch_size is None or spacing is None:
        raise ConfigError("model.patch_size and model.spacing are null: they come from the data's plan "
                          "(domain=mri_dixon), or set them, e.g. model.patch_size=[96,96,64] model.spacing=[1,1,2]")
    if spatial_dims not in (2, 3) or len(patch_size) != spatial_dims or len(spacing) != spatial_dims:
        raise ConfigError(f"spatial_dims must be 2 or 3 with one patch_size and spacing value per axis, got "
                          f"spatial_dims={spatial_dims}, patch_size={list(patch_size)}, spacing={list(spacing)}")
    layout = topology(spacing, patch_size)
    if len(layout.strides) < 3:
        raise ConfigError(f"patch_size {list(patch_size)} leaves room for {len(layout.strides) - 1} down-sampling "
                          f"stage(s) (feature maps stay >= {MIN_FEATURE_SIZE} voxels); the U-Net needs 2: use a larger "
                          f"patch (e.g. >= 16 voxels along two axes)")
    filters = [min(base_filters * 2**i, max_filters) for i in range(len(layout.strides))]
    from monai.networks.nets import DynUNet  # here: importing MONAI costs every process seconds

    net = DynUNet(spatial_dims, in_channels, classes, kernel_size=layout.kernels, strides=layout.strides,
                  upsample_kernel_size=layout.strides[1:], filters=filters, norm_name=(norm, {"affine": True}),
                  deep_supervision=False)
    return PadToStride(net, layout.divisor)
