"""Benchmarks, each a ratio measured in one run: `segsuite benchmark [NAME ...] [--quick]`.

NAME: core (training throughput: DataModule vs in-memory tensors), instances (panoptic quality vs torchmetrics;
streaming vs whole-image instance labelling), border (land-cover building-instance F1 with and without the U-Net
border weighting), landcover (tiled GeoTIFF inference vs bare
model and vs MONAI), mri_dixon (whole-volume inference vs bare model; HD95 vs MONAI), road_scene (full-resolution
frames/s vs bare model). Default: all.
"""

import argparse
import importlib
import json

SUITES = {
    "core": "segsuite.domains.toy.benchmark",
    "instances": "segsuite.core.instances.benchmark",
    "landcover": "segsuite.domains.landcover.benchmark",
    "border": "segsuite.domains.landcover.border_benchmark",
    "mri_dixon": "segsuite.domains.mri_dixon.benchmark",
    "road_scene": "segsuite.domains.road_scene.benchmark",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"which benchmarks: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--json", help="also write all results to this JSON file")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(SUITES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SUITES)}")
    results = {}
    for name in args.names or list(SUITES):
        print(f"\n=== {name} ===", flush=True)
        results[name] = importlib.import_module(SUITES[name]).run(quick=args.quick)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
