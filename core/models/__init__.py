"""Segmentation networks: every segmentation-models-pytorch architecture plus FCN-32s/16s/8s."""

from core.models.factory import ARCHITECTURES, create_model
from core.models.fcn import FCN

__all__ = ["ARCHITECTURES", "FCN", "create_model"]
