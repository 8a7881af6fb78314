"""Instance and panoptic segmentation on top of the semantic models: training targets (the U-Net border weight map),
instance extraction (connected components or border-split watershed), streaming labelling of row strips, panoptic
encodings, panoptic quality, and per-instance measurements."""

from segsuite.core.instances.extract import Instancer, Instances, thing_indices
from segsuite.core.instances.measure import measure_instances
from segsuite.core.instances.outputs import split_logits, true_instances, truth_cutter, write_panoptic_reports
from segsuite.core.instances.panoptic import (
    ids_from_rgb,
    label_divisor_ids,
    panoptic_segments,
    rgb_from_ids,
    split_label_divisor,
)
from segsuite.core.instances.stream import StreamInstances, StripLabeller, StripPanoptic
from segsuite.core.instances.targets import InstanceTargets, border_target, unet_weight_map

__all__ = [
    "InstanceTargets", "Instancer", "Instances", "PanopticMetrics", "StreamInstances", "StripLabeller", "StripPanoptic",
    "border_target", "ids_from_rgb", "label_divisor_ids", "measure_instances", "panoptic_segments", "rgb_from_ids",
    "split_label_divisor", "split_logits", "thing_indices", "true_instances", "truth_cutter", "unet_weight_map",
    "write_panoptic_reports",
]


def __getattr__(name: str):
    """``PanopticMetrics`` on first use: it is a torchmetrics ``Metric``, and importing torchmetrics costs a CLI
    process seconds that predict never needs."""
    if name == "PanopticMetrics":
        from segsuite.core.instances.quality import PanopticMetrics

        return PanopticMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
