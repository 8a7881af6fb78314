"""The one inference loop: windows (pure geometry) -> batched forward -> blender -> rows to a writer."""

from core.inference.blend import blend_weights
from core.inference.engine import Source, StripMerger, TilePredictor, predict_array, sliding_window
from core.inference.windows import Window, grid_windows

__all__ = [
    "Source", "StripMerger", "TilePredictor", "Window", "blend_weights", "grid_windows", "predict_array",
    "sliding_window",
]
