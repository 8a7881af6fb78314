"""The one inference loop: windows (pure geometry) -> batched forward -> merger -> rows to a sink."""

from segsuite.core.inference.blend import blend_weights, blend_weights_nd
from segsuite.core.inference.engine import (
    ArraySource,
    InferenceOptions,
    Merger,
    Source,
    StripMerger,
    TilePredictor,
    predict_array,
    sliding_window,
)
from segsuite.core.inference.merger import VolumeMerger
from segsuite.core.inference.windows import Box, Window, grid_boxes, grid_for, grid_windows

__all__ = [
    "ArraySource", "Box", "InferenceOptions", "Merger", "Source", "StripMerger", "TilePredictor", "VolumeMerger",
    "Window", "blend_weights", "blend_weights_nd", "grid_boxes", "grid_for", "grid_windows", "predict_array",
    "sliding_window",
]
