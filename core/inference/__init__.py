"""The one inference loop: windows (pure geometry) -> batched forward -> merger -> rows to a sink."""

from segsuite.core.inference.blend import blend_weights
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
from segsuite.core.inference.windows import Window, grid_windows

__all__ = [
    "ArraySource", "InferenceOptions", "Merger", "Source", "StripMerger", "TilePredictor", "Window", "blend_weights",
    "grid_windows", "predict_array", "sliding_window",
]
