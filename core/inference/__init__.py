"""The one inference loop: windows (pure geometry) -> batched forward -> merger -> rows to a sink.

Modules: :mod:`.options` (how to tile, checked once), :mod:`.sources` (what is read), :mod:`.feed` (reader threads
and the producer), :mod:`.batch` (reused host/device buffers), :mod:`.predictor` (the forward pass, TTA, layout),
:mod:`.merger` (strip and volume mergers behind one factory), :mod:`.memory` (heap trimming, one torch thread),
:mod:`.argmax` (the class map of a block of scores) and :mod:`.engine` (:func:`sliding_window`, which ties them
together)."""

from segsuite.core.inference.blend import blend_weights, blend_weights_nd
from segsuite.core.inference.engine import Block, predict_array, sliding_blocks, sliding_window
from segsuite.core.inference.merger import Merger, StripMerger, VolumeMerger, make_merger
from segsuite.core.inference.options import InferenceOptions
from segsuite.core.inference.predictor import TilePredictor
from segsuite.core.inference.sources import ArraySource, Source
from segsuite.core.inference.windows import Band, Box, Window, grid_bands, grid_boxes, grid_for, grid_windows

__all__ = [
    "ArraySource", "Band", "Block", "Box", "InferenceOptions", "Merger", "Source", "StripMerger", "TilePredictor",
    "VolumeMerger", "Window", "blend_weights", "blend_weights_nd", "grid_bands", "grid_boxes", "grid_for",
    "grid_windows", "make_merger", "predict_array", "sliding_blocks", "sliding_window",
]
