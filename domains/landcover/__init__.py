"""Land-cover domain: multi-band GeoTIFF scenes + label rasters (rasterio, windowed reads), the dataset
builder, streaming tiled prediction to GeoTIFF, tiled evaluation on the held-out split, synthetic scenes and
per-class area reports. Config: ``conf/domain/landcover.yaml``.

The entry points the config targets, ``domains.landcover.predict.predict`` and ``domains.landcover.evaluate.evaluate``,
are not re-exported here: a package attribute named like its submodule would hide that submodule from Hydra's
``_target_`` lookup."""

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
from domains.landcover.evaluate import held_out_regions, score_region
from domains.landcover.inference import RasterSource, read_normalized
from domains.landcover.io import (
    AtomicFile,
    RasterWriter,
    band_stats,
    check_label_values,
    check_pair,
    open_output,
    open_raster,
    read_label_window,
    read_window,
)
from domains.landcover.predict import check_input, plan, predict_raster
from domains.landcover.report import area_report, preview_png, write_area_report
from domains.landcover.synthetic import make_dataset, make_large_raster, make_scene

__all__ = [
    "DEFAULT_CLASSES",
    "AtomicFile",
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
    "check_input",
    "check_pair",
    "find_class_map",
    "held_out_regions",
    "find_scenes",
    "load_class_map",
    "make_dataset",
    "make_large_raster",
    "make_scene",
    "normalize",
    "open_output",
    "open_raster",
    "plan",
    "predict_raster",
    "preview_png",
    "read_label_window",
    "read_normalized",
    "read_window",
    "score_region",
    "write_area_report",
]
