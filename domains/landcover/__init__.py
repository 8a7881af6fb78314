"""Land-cover domain: multi-band GeoTIFF scenes + label rasters (rasterio, windowed reads), the dataset
builder, a streaming GeoTIFF writer for tiled inference, synthetic scenes and per-class area reports."""

from domains.landcover.classes import DEFAULT_CLASSES, ClassMap, LandCoverClass, find_class_map, load_class_map
from domains.landcover.dataset import (
    LandCoverGridDataset,
    LandCoverTrainDataset,
    Region,
    Scene,
    build_datasets,
    find_scenes,
    normalize,
)
from domains.landcover.inference import RasterSource, read_normalized
from domains.landcover.io import (
    RasterWriter,
    band_stats,
    check_label_values,
    check_pair,
    open_output,
    open_raster,
    read_label_window,
    read_window,
)
from domains.landcover.report import area_report, preview_png, write_area_report
from domains.landcover.synthetic import make_dataset, make_large_raster, make_scene

__all__ = [
    "DEFAULT_CLASSES",
    "ClassMap",
    "LandCoverClass",
    "LandCoverGridDataset",
    "LandCoverTrainDataset",
    "RasterSource",
    "RasterWriter",
    "Region",
    "Scene",
    "area_report",
    "band_stats",
    "build_datasets",
    "check_label_values",
    "check_pair",
    "find_class_map",
    "find_scenes",
    "load_class_map",
    "make_dataset",
    "make_large_raster",
    "make_scene",
    "normalize",
    "open_output",
    "open_raster",
    "preview_png",
    "read_label_window",
    "read_normalized",
    "read_window",
    "write_area_report",
]
