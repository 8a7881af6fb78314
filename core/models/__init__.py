"""Segmentation networks: every segmentation-models-pytorch architecture plus FCN-32s/16s/8s, and nnU-Net's
self-configuring U-Net (MONAI ``DynUNet``, 2D or 3D)."""

from segsuite.core.models.dynunet import create_dynunet, topology
from segsuite.core.models.factory import ARCHITECTURES, create_model
from segsuite.core.models.fcn import FCN

__all__ = ["ARCHITECTURES", "FCN", "create_dynunet", "create_model", "topology"]
