"""The throughput table of issue #14, each figure measured as the issue defines it: ``segsuite benchmark throughput``
(a private module: every public module of scripts/ is a ``segsuite`` command).

Ratios come from one run with the contenders interleaved (:func:`segsuite.core.benchmark.timeit`): the ratio of the
medians, and as spread the min-max of the ratios of the rounds (each round ran both contenders back to back). Speed
figures divide by the bare forward at its best, the limit (issue #25): the network in the layout and precision the
engine runs it in (channels-last for 2D networks, bf16 with ``--device cuda``); the column ``contig`` gives the same
figure against the bare forward in the contiguous layout, as users have the network. The product's default tiling
(tile 512, overlap 64, batch 8, Gaussian blending) and Unet/resnet18 with random weights (``encoder_weights=None``)
throughout. Figures:

1. land cover ``run_predict`` (GeoTIFF file -> class raster file) vs the bare forward over the same windows of a
   4096^2 scene, already in memory (81 windows);
2. the same ``run_predict`` vs MONAI ``sliding_window_inference`` (image read and normalised into memory first, same
   tile, overlap and Gaussian);
3. memory added over the loaded model (RSS high-water mark in a fresh child process minus that after imports, model
   and one warm-up batch: :func:`segsuite.scripts.benchmarks.landcover.run_child`) at 8192^2, ours / MONAI's;
4. memory added, ours, at 8192^2 vs a raster 2048 rows high and as wide (height alone grows: the issue's "should not
   grow with height"), and 4b. vs 2048^2 (width grows as well: column bands, ``band: auto``, keep the strip bounded);
5. the whole pipeline with a no-compute model (:class:`~segsuite.scripts.benchmarks.landcover.BandCopy`: its first
   band copied to the K class channels) vs bare rasterio reads of the same windows of the same file, in one process
   (one GDAL block cache), in Mpx/s;
6. MRI 256x256x64 stored at 1 x 1 x 3 mm, 4 channels, for a model planned at the phantom's 1.5 x 1.5 x 3 mm:
   ``run_predict`` NIfTI to NIfTI (read, normalise, resample, 64 slices of 171 x 171 padded to 192, probabilities
   back, argmax, write) vs the bare forward over the same resampled slices
   (:func:`segsuite.scripts.benchmarks.mri_dixon.throughput`; the predict path in memory in the note);
7. road 1024x2048 frames, ``run_predict`` writing label, colour and overlay PNGs vs the bare forward on the decoded
   frames (:func:`segsuite.scripts.benchmarks.road_scene.throughput`);
8-10. issue 21: memory added on a 65,536^2 VRT mosaic (256 tiles of 4096^2) with the no-compute model (8), and
   against the 8192^2 mosaic (8b); speed per pixel between the two (9); training windows per second from a
   20,000^2 GeoTIFF vs the same windows in memory (10).

``--device cuda``: figures 1, 6 and 7 on the GPU, bf16 autocast for land cover and road (goal >= 0.8); without a GPU
it says so. ``--quick``: small sizes and one repeat, a smoke test whose numbers are not the issue's figures.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from segsuite.core.benchmark import BARE_BEST, BARE_CONTIGUOUS, Timing, paired_ratios, print_table

TILE, OVERLAP, BATCH = (512, 512), (64, 64), 8  # the product's default (conf/domain/landcover.yaml inference)
GPU_GOAL = 0.8


@dataclass(frozen=True)
class Sizes:
    """What one run measures: square land-cover scenes (side in px), the MRI volume, road frames (H, W)."""

    scene: int
    memory_big: int
    memory_small: int
    mri: tuple[int, int, int]
    road: tuple[int, int]
    road_frames: int
    repeats: int
    mosaic_tile: int = 4096  # figures 8-9: VRT mosaics of one scene this size, 2 x 2 and mosaic_grid^2 tiles
    mosaic_grid: int = 16
    train_size: int = 20_000  # figure 10: the training scene's side
    memory_runs: int = 3  # figures 3-4b: child processes per raster, ours (the median)


FULL = Sizes(4096, 8192, 2048, (256, 256, 64), (1024, 2048), 8, 3)
QUICK = Sizes(1024, 1024, 512, (64, 64, 24), (256, 512), 2, 1, 512, 4, 2048, 1)


@dataclass(frozen=True)
class Figure:
    """One row of the table: our value against its goal (a floor for speed ratios, a ceiling for memory)."""

    name: str
    value: float
    goal: float
    at_most: bool = False
    spread: tuple[float, float] | None = None
    note: str = ""
    contiguous: float | None = None  # the same speed against the bare forward as users have it (contiguous layout)

    @property
    def met(self) -> bool:
        return self.value <= self.goal if self.at_most else self.value >= self.goal


def speed_figure(name: str, timings: dict[str, Timing], contender: str, baseline: str = BARE_BEST, goal: float = 1.0,
                 note: str = "", second: str | None = None) -> Figure:
    """``contender``'s speed relative to ``baseline``: ratio of the medians, spread over the rounds; ``second``: a
    second baseline (the contiguous bare forward) whose ratio is shown beside it."""
    rounds = paired_ratios(timings, contender, baseline)
    other = timings[second].median / timings[contender].median if second else None
    return Figure(name, timings[baseline].median / timings[contender].median, goal, False,
                  (min(rounds), max(rounds)), note, other)


def format_row(figure: Figure, width: int) -> str:
    """One line of the table: figure | ours | spread | goal | met? | vs contiguous | note."""
    spread = f"{figure.spread[0]:.3f}-{figure.spread[1]:.3f}" if figure.spread else "-"
    goal = f"{'<=' if figure.at_most else '>='} {figure.goal:g}"
    contiguous = "-" if figure.contiguous is None else f"{figure.contiguous:.3f}"
    return (f"{figure.name:<{width}}  {figure.value:7.3f}  {spread:>13}  {goal:>7}  {'yes' if figure.met else 'NO':<4}"
            f"  {contiguous:>7}  {figure.note}").rstrip()


def format_table(figures: list[Figure]) -> str:
    """The header and one line per figure."""
    width = max([len(f.name) for f in figures] + [6])
    header = f"{'figure':<{width}}  {'ours':>7}  {'spread':>13}  {'goal':>7}  met?  {'contig':>7}  note"
    return "\n".join([header] + [format_row(f, width) for f in figures])


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def torch_threads() -> int:
    """Give torch every core unless OMP_NUM_THREADS says otherwise; the count it then uses."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    return torch.get_num_threads()


def make_scene(sizes: Sizes, tmp: Path) -> Path:
    """The land-cover scene of figures 1, 2 and 5 (uint16, deflate, 512 px blocks)."""
    from segsuite.domains.landcover.synthetic import make_large_raster
    from segsuite.scripts.benchmarks.landcover import BANDS

    return make_large_raster(tmp / "scene.tif", sizes.scene, sizes.scene, bands=BANDS)


def landcover_speed(sizes: Sizes, raster: Path, tmp: Path, device: str, amp: bool) -> tuple[dict[str, Timing], int]:
    """Figures 1-2: the timings of :func:`segsuite.scripts.benchmarks.landcover.speed` (full runs: warmed up by one
    batch, not a whole untimed round of minutes)."""
    from segsuite.scripts.benchmarks.landcover import bench_job, speed

    job = bench_job("unet", TILE, OVERLAP, BATCH, device, amp)
    timings, windows = speed(job, raster, tmp / "pred.tif", sizes.repeats, warmup=int(sizes.scene < 2048))
    print_table(f"land cover {sizes.scene}^2, {windows} windows, {device}{' bf16' if amp else ''}", timings,
                BARE_BEST, unit="Mpx/s", work=sizes.scene**2 / 1e6)
    return timings, windows


def landcover_figures(sizes: Sizes, raster: Path, tmp: Path) -> list[Figure]:
    """Figures 1 and 2 on the CPU."""
    timings, windows = landcover_speed(sizes, raster, tmp, "cpu", False)
    name = f"{sizes.scene}^2 scene, {windows} windows"
    return [speed_figure(f"1. land cover run_predict vs bare forward ({name})", timings, "pipeline (file -> file)",
                         BARE_BEST, 0.97, second=BARE_CONTIGUOUS),
            speed_figure("2. land cover run_predict vs MONAI sliding window (in memory)", timings,
                         "pipeline (file -> file)", "MONAI sliding window in memory", 1.1)]


def memory_figures(sizes: Sizes, tmp: Path, threads: int) -> list[Figure]:
    """Figures 3, 4 and 4b: memory added over the loaded model, each run in a fresh child process; ours the median of
    :attr:`Sizes.memory_runs` children per raster (one run is not reproducible: how glibc's heap fragments varies,
    and the same 8192^2 run added 208-423 MiB with the heap kept), MONAI's one run."""
    from segsuite.domains.landcover.synthetic import make_large_raster
    from segsuite.scripts.benchmarks.landcover import BANDS, run_child

    common = dict(model="unet", tile=list(TILE), overlap=list(OVERLAP), batch_size=BATCH, device="cpu",
                  threads=threads)

    def added(height: int, width: int, kind: str = "pipeline") -> list[float]:
        raster = make_large_raster(tmp / f"mem_{height}x{width}.tif", height, width, bands=BANDS)
        count = sizes.memory_runs if kind == "pipeline" else 1
        peaks = [run_child(kind, raster=str(raster), output=str(tmp / f"mem_{kind}.tif"), **common)
                 for _ in range(count)]
        raster.unlink()
        return sorted(p["peak_mb"] - p["base_mb"] for p in peaks)

    big, small = sizes.memory_big, sizes.memory_small
    ours, (theirs,) = added(big, big), added(big, big, "monai")
    rows, square = added(small, big), added(small, small)
    mid = statistics.median

    def runs(values: list[float]) -> str:
        return "/".join(f"{v:.0f}" for v in values)

    return [Figure(f"3. memory added at {big}^2, ours / MONAI's", _ratio(mid(ours), theirs), 0.1, True,
                   note=f"{mid(ours):.0f} / {theirs:.0f} MiB"),
            Figure(f"4. memory added, ours, {big}^2 / {small}x{big} (height only)", _ratio(mid(ours), mid(rows)), 1.2,
                   True, note=f"median MiB of runs {runs(ours)} / {runs(rows)}"),
            Figure(f"4b. memory added, ours, {big}^2 / {small}^2 (width grows too)", _ratio(mid(ours), mid(square)),
                   1.2, True, note=f"median MiB of runs {runs(ours)} / {runs(square)}")]


def no_compute_figure(sizes: Sizes, raster: Path, tmp: Path) -> Figure:
    """Figure 5: the pipeline with :class:`BandCopy` vs bare rasterio reads of the same windows, in Mpx/s."""
    from segsuite.scripts.benchmarks.landcover import bench_job, read_speed

    timings = read_speed(bench_job("copy", TILE, OVERLAP, BATCH, "cpu"), raster, tmp / "copy.tif", sizes.repeats)
    reads, ours = timings.values()
    mpx = sizes.scene**2 / 1e6
    print_table(f"land cover {sizes.scene}^2, no-compute model vs reads", timings,
                "bare rasterio reads, same windows", unit="Mpx/s", work=mpx)
    return speed_figure("5. pipeline, no-compute model, vs bare rasterio reads", timings, ours.name, reads.name,
                        0.5, note=f"{mpx / ours.median:.1f} vs {mpx / reads.median:.1f} Mpx/s")


def bands_figures(sizes: Sizes, tmp: Path, threads: int) -> list[Figure]:
    """Figures 8-10 (issue 21): memory added and speed per pixel on VRT mosaics, no-compute model, band auto
    (:func:`segsuite.scripts.benchmarks.landcover_bands.mosaic_runs`); training windows from a large GeoTIFF vs the
    same windows in memory (:func:`~segsuite.scripts.benchmarks.landcover_bands.training_speed`)."""
    from segsuite.scripts.benchmarks.landcover_bands import mosaic_runs, training_speed

    n, side = sizes.mosaic_grid, sizes.mosaic_grid * sizes.mosaic_tile
    runs = mosaic_runs(tmp, sizes.mosaic_tile, (2, n), TILE, OVERLAP, BATCH, threads)
    small, big = runs[2], runs[n]
    added = {k: r["peak_mb"] - r["base_mb"] for k, r in runs.items()}
    speed = {k: r["mpx"] / r["seconds"] for k, r in runs.items()}
    timings = training_speed(tmp, sizes.train_size, repeats=max(sizes.repeats, 2))
    file, cached, memory = timings
    return [Figure(f"8. memory added, {side}^2 VRT ({n * n} tiles of {sizes.mosaic_tile}^2), no-compute model, MiB",
                   added[n], 512, True, note=f"peak {big['peak_mb']:.0f} MiB over {big['base_mb']:.0f}"),
            Figure(f"8b. memory added, {side}^2 / {2 * sizes.mosaic_tile}^2 VRT", _ratio(added[n], added[2]), 1.2,
                   True, note=f"{added[n]:.0f} / {added[2]:.0f} MiB"),
            Figure(f"9. speed per pixel, {side}^2 / {2 * sizes.mosaic_tile}^2 VRT, no-compute model",
                   _ratio(speed[n], speed[2]), 0.95, note=f"{speed[n]:.1f} vs {speed[2]:.1f} Mpx/s, one run each "
                   f"({big['seconds']:.0f} s, {small['seconds']:.1f} s)"),
            speed_figure(f"10. training windows/s from a {sizes.train_size}^2 GeoTIFF vs in memory", timings, file,
                         memory, 0.9, note="400 windows of 256 px, D4 augmentation; first pass, decoding"),
            speed_figure("10b. the same, decoded-pixel cache warm (datasets.cache) vs in memory", timings, cached,
                         memory, 0.9, note="later epochs, folds and trials")]


def mri_figure(sizes: Sizes, device: str = "cpu", amp: bool = False, goal: float = 0.9, label: str = "6.") -> Figure:
    """Figure 6 from :func:`segsuite.scripts.benchmarks.mri_dixon.throughput`: NIfTI to NIfTI with resampling."""
    from segsuite.scripts.benchmarks.mri_dixon import END_TO_END, throughput

    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        result = throughput(sizes.mri, batch_size=16, repeats=sizes.repeats, device=device, amp=amp)
    shape = "x".join(map(str, sizes.mri))
    return speed_figure(f"{label} MRI {shape} at 1x1x3 mm, NIfTI to NIfTI (resampled) vs bare forward",
                        result["timings"], END_TO_END, BARE_BEST, goal, second=BARE_CONTIGUOUS,
                        note=f"{result['slices']} slices; predict path in memory {result['ratio']:.3f}")


def road_figure(sizes: Sizes, device: str, amp: bool, goal: float = 0.95, label: str = "7.") -> Figure:
    """Figure 7: ``run_predict`` with label, colour and overlay outputs vs the bare forward."""
    from segsuite.scripts.benchmarks.road_scene import LABEL_ONLY, throughput

    timings, used = throughput(sizes.road, n=sizes.road_frames, distinct=sizes.road_frames, repeats=sizes.repeats,
                               device=device, amp=amp)
    print_table(f"road {sizes.road_frames} frames {sizes.road[0]}x{sizes.road[1]}, {used}{' bf16' if amp else ''}",
                timings, BARE_BEST, unit="frames/s", work=sizes.road_frames)
    return speed_figure(f"{label} road {sizes.road[0]}x{sizes.road[1]} run_predict (label, colour, overlay) vs bare",
                        timings, "run_predict to files", BARE_BEST, goal, second=BARE_CONTIGUOUS,
                        note=f"{sizes.road_frames} frames; label only "
                             f"{timings[BARE_BEST].median / timings[LABEL_ONLY].median:.3f}")


def _done(figures: list[Figure], *new: Figure) -> None:
    """Keep and print each figure as soon as it is measured (a long run interrupted still shows what it got)."""
    for figure in new:
        figures.append(figure)
        print(f"\n-> {format_row(figure, len(figure.name))}  (load average {os.getloadavg()[0]:.2f})", flush=True)


def cpu_figures(sizes: Sizes, threads: int) -> list[Figure]:
    """The issue's table on the CPU, the quicker figures first; returned in the issue's order."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="throughput_") as name:
        tmp = Path(name)
        raster = make_scene(sizes, tmp)
        _done(figures, no_compute_figure(sizes, raster, tmp))
        _done(figures, mri_figure(sizes))
        _done(figures, road_figure(sizes, "cpu", False))
        _done(figures, *landcover_figures(sizes, raster, tmp))
        raster.unlink()
        _done(figures, *memory_figures(sizes, tmp, threads))
        _done(figures, *bands_figures(sizes, tmp, threads))
    return sorted(figures, key=lambda f: f.name)


def gpu_figures(sizes: Sizes) -> list[Figure]:
    """Land cover, MRI and road with bf16 autocast on the GPU."""
    with tempfile.TemporaryDirectory(prefix="throughput_") as name:
        timings, windows = landcover_speed(sizes, make_scene(sizes, Path(name)), Path(name), "cuda", True)
    return [speed_figure(f"G1. land cover run_predict vs bare forward, bf16 ({windows} windows)", timings,
                         "pipeline (file -> file)", BARE_BEST, GPU_GOAL, second=BARE_CONTIGUOUS),
            mri_figure(sizes, "cuda", True, GPU_GOAL, "G6. (bf16)"),
            road_figure(sizes, "cuda", True, GPU_GOAL, "G7. (bf16)")]


def run(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Measure the table (on ``device``: cpu, or cuda for the GPU figures), print it and return it."""
    sizes = QUICK if quick else FULL
    threads = torch_threads()
    print(f"torch threads {threads} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} CPUs), load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no GPU here: the bf16 ratios were not measured")
        return {"device": device, "figures": []}
    figures = gpu_figures(sizes) if device.startswith("cuda") else cpu_figures(sizes, threads)
    load = os.getloadavg()
    title = "QUICK SMOKE TEST: small sizes, 1 repeat; NOT the issue's figures" if quick else "issue #14/#25 figures"
    print(f"\n{title} ({device}, {threads} torch threads, load average 1/5/15 min at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})\n{format_table(figures)}")
    return {"device": device, "quick": quick, "threads": threads, "load_average": list(load),
            "figures": [{**asdict(f), "met": f.met} for f in figures]}
