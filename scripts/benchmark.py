"""Benchmarks, each a ratio measured in one run: `segsuite benchmark [NAME ...] [--quick] [--device cuda]`.

NAME: core (training throughput: DataModule vs in-memory tensors), instances (panoptic quality vs torchmetrics;
streaming vs whole-image instance labelling), border (land-cover building-instance F1 with and without the U-Net
border weighting), landcover (tiled GeoTIFF inference vs bare
model and vs MONAI), mri_dixon (whole-volume inference vs bare model; HD95 vs MONAI), road_scene (full-resolution
frames/s vs bare model), throughput (issue #14's table: every figure against its goal, one table; --device cuda:
its GPU figures in bf16). Default: all. --device goes to the suites that take one (landcover, road_scene,
throughput) and runs only those.
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
    "throughput": "segsuite.scripts._throughput",
}
DEVICE_SUITES = ("landcover", "road_scene", "throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"which benchmarks: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--json", help="also write all results to this JSON file")
    parser.add_argument("--device", help="cpu or cuda, for the suites that take one (default: each suite's own)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(SUITES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SUITES)}")
    names = args.names or list(SUITES)
    if args.device:  # only the suites whose run() takes a device
        without = [name for name in names if name not in DEVICE_SUITES]
        if args.names and without:
            parser.error(f"--device is not taken by {without}; it is by {', '.join(DEVICE_SUITES)}")
        names = [name for name in names if name in DEVICE_SUITES]
    suites = {name: importlib.import_module(SUITES[name]).run for name in names}
    results = {}
    for name, run in suites.items():
        print(f"\n=== {name} ===", flush=True)
        results[name] = run(quick=args.quick, **({"device": args.device} if args.device else {}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
