"""Predict driving scenes: an image or a folder of images -> label PNGs in the dataset's own format, colour PNGs
and overlay PNGs.

The frames go through the core's tiled inference (``core.inference.sliding_window``): decoded and normalised as in
training (``meta["normalization"]``), resized by ``meta["train_scale"]`` when the model was trained at reduced
resolution, tiled when larger than ``tile``; the blended logits are upsampled back to the full frame. Frames are
decoded in a thread pool ahead of the network and written by another, so the accelerator keeps busy.

Output folder (input subfolders are kept, e.g. Cityscapes cities)::

    OUT/labels/<sub>/<name>.png    what the dataset's official tools read: Cityscapes label ids, CamVid indices
                                   0..10 (11 Void), class-map ids (folder layout), or for KITTI road the devkit's
                                   probability PNG round(255 * P(road)) named <cat>_road_<num>.png
    OUT/color/<sub>/<name>.png     class colours
    OUT/overlay/<sub>/<name>.png   the image blended with the class colours

With ``mode="instance"`` or ``"panoptic"`` the instances of the thing classes are also cut out of each frame's
full-resolution class map (split by the model's border channel when it has one) and written in the Cityscapes
instance format or as COCO panoptic PNGs with one ``OUT/panoptic.json`` (layout: ``panoptic.py``).

Everything is checked before work (inputs readable, outputs not already there unless ``overwrite``), written into
a staging folder beside OUT and moved into place only when every frame succeeded: on error nothing is left.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError, DataError
from core.inference import TilePredictor, Window, sliding_window
from core.instances import Instancer, split_logits
from core.predict import output_channels
from core.task import SegmentationTask

from .datasets import IMAGE_SUFFIXES
from .io import image_size, output_name, read_pixels, unit_range, write_color_label, write_native, write_overlay
from .panoptic import (
    MASKS,
    MODE_KINDS,
    PANOPTIC_JSON,
    FrameOutputs,
    InstanceWriter,
    check_image_ids,
    check_mode,
    kind_path,
    mask_stem,
)

OUTPUT_KINDS = {"label": "labels", "color": "color", "overlay": "overlay"}  # kind -> subfolder
_META_KEYS = ("normalization", "class_names", "class_colors", "label_format")


# ----------------------------------------------------------------------------------------------------------------
# Frames: decoding ahead of the network
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One decoded frame: model input ``(3, h, w)`` float32 (normalised, resized by train_scale), the full-resolution
    ``(H, W)`` and, when kept for overlays, the RGB image ``(H, W, 3)`` (uint8, or float32 in [0, 1] from 16-bit)."""

    input: np.ndarray
    size: tuple[int, int]
    rgb: np.ndarray | None


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The model-input size of a frame of ``size`` (H, W) at ``scale``, rounded as in training (at least 1)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _normalise(image: torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """``(image - mean) / std`` per channel of ``(3, ...)`` float32 values in [0, 1], as the training datasets do."""
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(3, *[1] * (image.ndim - 1))
    std = torch.tensor(norm["std"], dtype=torch.float32).view(3, *[1] * (image.ndim - 1))
    return (image - mean) / std


def load_frame(path: Path, meta: dict[str, Any], keep_rgb: bool) -> Frame:
    """Decode ``path`` (grey/RGBA converted as in training), resize by ``meta["train_scale"]`` and normalise."""
    pixels = read_pixels(path)  # (H, W, 3) uint8, or float32 in [0, 1]
    size = pixels.shape[:2]
    target = scaled_size(size, float(meta.get("train_scale", 1.0)))
    if pixels.dtype == np.uint8 and target == size:
        # 8-bit at full size: one table lookup per value gives exactly the training arithmetic, much faster
        levels = torch.arange(256, dtype=torch.float32).expand(3, 256) / 255.0  # (3, 256)
        table = _normalise(levels, meta["normalization"]).numpy()
        model_input = np.empty((3, *size), dtype=np.float32)  # (3, H, W)
        for c in range(3):
            np.take(table[c], pixels[..., c], out=model_input[c])
    else:
        image = torch.from_numpy(unit_range(pixels)).permute(2, 0, 1)  # (3, H, W) in [0, 1]
        if target != size:  # the same resampling as training's augmentation (bilinear, antialiased)
            image = F.interpolate(image[None], size=target, mode="bilinear", align_corners=False, antialias=True)[0]
        model_input = _normalise(image, meta["normalization"]).contiguous().numpy()
    return Frame(model_input, size, pixels if keep_rgb else None)


def default_workers(workers: int | None) -> int:
    """``workers`` if given, else the CPU count up to 16 (decoding and PNG encoding release the GIL)."""
    return max(1, workers) if workers is not None else min(16, os.cpu_count() or 1)


class FrameSource:
    """One frame as a ``core.inference.Source``: ``shape`` from the file header, pixels from the reader's pool."""

    def __init__(self, reader: FrameReader, index: int, shape: tuple[int, int]) -> None:
        self.reader, self.index, self.shape = reader, index, shape

    def read(self, window: Window) -> np.ndarray:
        r, c, h, w = window
        return self.reader.frame(self.index).input[:, r : r + h, c : c + w]

    def skip(self, window: Window) -> bool:
        return False


class FrameReader:
    """Decodes frames in ``workers`` threads, up to ``ahead`` frames beyond the one the engine reads; a frame stays
    in memory until :meth:`release`.

    Args:
        paths: image files; their headers are read now (DataError naming an unreadable file).
        meta: the checkpoint's data meta (normalisation, train_scale).
        keep_rgb: keep the full-resolution RGB image of each frame (for overlays).
        workers: decoding threads (default: see :func:`default_workers`); ahead: frames decoded ahead
            (default: ``workers``).
    """

    def __init__(self, paths: Sequence[Path], meta: dict[str, Any], keep_rgb: bool = False,
                 workers: int | None = None, ahead: int | None = None) -> None:
        self.paths = list(paths)
        self.sizes = [image_size(p) for p in self.paths]  # (H, W) each
        scale = float(meta.get("train_scale", 1.0))
        self.sources = [FrameSource(self, i, scaled_size(s, scale)) for i, s in enumerate(self.sizes)]
        self._load: Callable[[Path], Frame] = lambda path: load_frame(path, meta, keep_rgb)
        workers = default_workers(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="road-decode")
        self._ahead = workers if ahead is None else max(0, ahead)
        self._futures: dict[int, Future] = {}
        self._next = 0  # first index never submitted
        self._lock = threading.Lock()

    def frame(self, index: int) -> Frame:
        """The decoded frame ``index`` (waits for it); schedules the following frames."""
        with self._lock:
            while self._next <= min(index + self._ahead, len(self.paths) - 1):
                self._futures[self._next] = self._pool.submit(self._load, self.paths[self._next])
                self._next += 1
            future = self._futures[index]
        return future.result()

    def release(self, index: int) -> None:
        """Forget frame ``index`` (its memory can go)."""
        with self._lock:
            self._futures.pop(index, None)

    def close(self) -> None:
        """Stop decoding (pending frames are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """A frame's result at full resolution: class indices ``(H, W)`` uint8 (int64 beyond 256 classes), P(road)
    ``(H, W)`` float32 for KITTI-road models (else None), the RGB image ``(H, W, 3)`` if it was kept, the border
    probability ``(H, W)`` float32 when the predictor returns a border channel, and when asked the confidence
    ``(H, W)`` float32 (softmax probability of the predicted class)."""

    index: int
    labels: np.ndarray
    road_prob: np.ndarray | None
    rgb: np.ndarray | None
    border_prob: np.ndarray | None = None
    confidence: np.ndarray | None = None


def check_meta(task: SegmentationTask) -> dict[str, Any]:
    """The checkpoint's data meta, checked to hold what road-scene prediction needs."""
    meta = dict(task.hparams.get("data_meta") or {})
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ConfigError(f"the checkpoint's data meta lacks {missing}: it was not trained on road-scene data")
    return meta


def _finish(logits: torch.Tensor, frame: Frame, index: int, meta: dict[str, Any], num_classes: int,
            confidence: bool = False) -> Prediction:
    """Upsample blended logits ``(C, h, w)`` (K class logits, then the border logit when C > K) to the frame's
    ``(H, W)``; take classes, P(road) for KITTI, the border probability and, if asked, the confidence."""
    if tuple(logits.shape[-2:]) != frame.size:
        logits = F.interpolate(logits[None], size=frame.size, mode="bilinear", align_corners=False)[0]
    labels, border = split_logits(logits, num_classes)
    kitti = meta["label_format"] == "kitti_road"
    probs = logits[:num_classes].softmax(0) if kitti or confidence else None  # (K, H, W)
    road_prob = probs[int(meta.get("road_class", 1))].cpu().numpy() if kitti else None
    conf = probs.amax(0).float().cpu().numpy() if confidence else None
    return Prediction(index, labels, road_prob, frame.rgb, border, conf)


def infer(task: SegmentationTask, predictor: TilePredictor, paths: Sequence[Path],
          tile: Sequence[int] = (1024, 2048), overlap: Sequence[int] = (128, 256), batch_size: int = 2,
          blend: str = "gaussian", keep_rgb: bool = False, workers: int | None = None,
          progress: bool | str = False, channels: int | None = None,
          confidence: bool = False) -> Iterator[Prediction]:
    """Predict every image of ``paths`` at full resolution, in order (the one path predict and evaluate share).

    ``channels``: what ``predictor`` returns (default: the K classes; K + 1 with a border channel, see
    ``core.predict.output_channels``); ``confidence``: also give each prediction its confidence map.
    Raises DataError naming the file for an unreadable image (headers are read before any inference).
    """
    meta = check_meta(task)
    num_classes = int(task.hparams.num_classes)
    reader = FrameReader(paths, meta, keep_rgb, workers)
    blocks: list[torch.Tensor] = []
    try:
        for index, first_row, logits, _ in sliding_window(
            predictor, reader.sources, channels or num_classes, tile=tuple(tile),
            overlap=tuple(overlap), batch_size=batch_size, blend=blend, progress=progress,
        ):
            blocks.append(logits)  # (K, n, w) rows of frame ``index``, in order
            if first_row + logits.shape[1] < reader.sources[index].shape[0]:
                continue
            full = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
            blocks = []
            frame = reader.frame(index)
            reader.release(index)
            yield _finish(full, frame, index, meta, num_classes, confidence)
    finally:
        reader.close()


# ----------------------------------------------------------------------------------------------------------------
# Inputs and outputs
# ----------------------------------------------------------------------------------------------------------------


def find_images(source: Path, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """``(image, path relative to the input)`` for an image file or every image under a folder (recursive, hidden
    files and anything under ``exclude`` skipped), sorted."""
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise DataError(f"input {source} does not exist (expected an image or a folder of images)")
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in rel.parts):
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file():
            found.append((path, rel))
    if not found:
        raise DataError(f"no images in {source} (searched recursively for {', '.join(IMAGE_SUFFIXES)})")
    return found


def _planned(kind: str, rel: Path, meta: dict[str, Any]) -> Path:
    """Output file of ``kind`` for the input ``rel``, relative to the output folder."""
    if kind in OUTPUT_KINDS:
        name = output_name(rel.name, meta) if kind == "label" else f"{rel.stem}.png"
        return Path(OUTPUT_KINDS[kind]) / rel.parent / name
    return kind_path(kind, rel)


def _refuse_masks(output: Path, rel: Path) -> None:
    """DataError if instance masks of ``rel`` exist already (their number is known only after inference)."""
    folder = output / kind_path("instance_txt", rel).parent / MASKS
    pattern = re.compile(re.escape(mask_stem(rel)) + r"_\d+\.png")
    found = sorted(p for p in folder.glob("*.png") if pattern.fullmatch(p.name)) if folder.is_dir() else []
    if found:
        raise DataError(f"instance masks of {rel} already exist (e.g. {found[0]}); pass overwrite=true to replace "
                        "them")


def plan_outputs(images: list[tuple[Path, Path]], output: Path, kinds: Sequence[str], meta: dict[str, Any],
                 overwrite: bool, mode: str = "semantic") -> list[dict[str, Path]]:
    """Per image, ``kind -> output file`` (relative to ``output``; ``mode`` adds the instance or panoptic files);
    refuses existing files (unless ``overwrite``) and two images that would write the same file."""
    if mode == "panoptic":
        if (output / PANOPTIC_JSON).exists() and not overwrite:
            raise DataError(f"output {output / PANOPTIC_JSON} already exists; pass overwrite=true to replace it")
        check_image_ids([rel for _, rel in images])
    all_kinds = [*kinds, *MODE_KINDS[mode]]
    plans, seen = [], {}
    for image, rel in images:
        plan = {}
        for kind in all_kinds:
            plan[kind] = _planned(kind, rel, meta)
            if plan[kind] in seen:
                raise DataError(f"images {seen[plan[kind]]} and {image} would both be written to "
                                f"{output / plan[kind]}; rename one")
            seen[plan[kind]] = image
            target = output / plan[kind]
            if target.exists() and not overwrite:
                raise DataError(f"output {target} already exists; pass overwrite=true to replace it")
        if mode == "instance" and not overwrite:
            _refuse_masks(output, rel)
        plans.append(plan)
    return plans


@contextmanager
def staged_folder(output: Path) -> Iterator[Path]:
    """A staging folder beside ``output``; on success its files are moved into ``output`` (the whole folder is
    renamed when ``output`` does not exist yet), on error it is deleted."""
    if output.exists() and not output.is_dir():
        raise DataError(f"output {output} is a file; predict writes a folder")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    except OSError as err:
        raise DataError(f"cannot write into {output.parent}: {err.strerror}") from err
    try:
        yield stage
        if not output.exists():
            os.replace(stage, output)
            return
        for src in sorted(p for p in stage.rglob("*") if p.is_file()):
            dst = output / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_prediction(pred: Prediction, plan: dict[str, Path], stage: Path, meta: dict[str, Any], alpha: float,
                     instances: InstanceWriter | None = None, rel: Path = Path()) -> FrameOutputs | None:
    """Write the files of ``plan`` for one prediction under ``stage``: the semantic ones, then with ``instances``
    those of its mode for the input ``rel`` (what that wrote is returned)."""
    colors = meta["class_colors"]
    for kind in OUTPUT_KINDS:
        if kind not in plan:
            continue
        path = stage / plan[kind]
        if kind == "label":
            write_native(pred.labels, meta, path, road_prob=pred.road_prob)
        elif kind == "color":
            write_color_label(pred.labels, colors, path)
        else:
            write_overlay(pred.rgb, pred.labels, colors, path, alpha=alpha)
    if instances is None:
        return None
    return instances.write(pred.labels, pred.border_prob, pred.confidence, plan, rel, stage)


def _check_options(outputs: Sequence[str], tile: Sequence[int], overlap: Sequence[int], alpha: float) -> list[str]:
    """The requested output kinds, after checking every option (ConfigError naming the bad value)."""
    kinds = list(outputs)
    unknown = [k for k in kinds if k not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"domain.predict.outputs={kinds}: choose one or more of {list(OUTPUT_KINDS)}")
    if len(tile) != 2 or len(overlap) != 2 or not all(0 <= o < t for o, t in zip(overlap, tile)):
        raise ConfigError(f"tile={list(tile)}, overlap={list(overlap)}: expected [h, w] each, 0 <= overlap < tile")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha={alpha}: expected a value in [0, 1]")
    return kinds


def predict(task: SegmentationTask, predictor: TilePredictor, input: str, output: str, overwrite: bool = False,
            tile: Sequence[int] = (1024, 2048), overlap: Sequence[int] = (128, 256), batch_size: int = 2,
            blend: str = "gaussian", outputs: Sequence[str] = ("label", "color", "overlay"), alpha: float = 0.5,
            workers: int | None = None, progress: bool = True, mode: str = "semantic",
            instancer: Instancer | None = None) -> list[Path]:
    """Predict an image or a folder of images (recursively) into the folder ``output`` (layout: module docstring).

    Args:
        tile, overlap: inference window and overlap [h, w] in model-input pixels; frames up to ``tile`` go
            through the network whole.
        batch_size: windows per forward pass; blend: how overlapping windows are weighted.
        outputs: which of ``label``, ``color``, ``overlay`` to write; alpha: overlay opacity of the colours.
        workers: decoding threads and writing threads, each (default: the CPU count up to 16).
        mode: ``semantic``, or ``instance`` / ``panoptic`` to also write those files (``panoptic.py``);
            instancer: how instances are cut (needed for those modes). ``predictor`` returns the channels of
            ``core.predict.output_channels(task, instancer)``.

    Returns:
        The files written, in ``output``.
    """
    meta = check_meta(task)
    kinds = _check_options(outputs, tile, overlap, alpha)
    check_mode(mode, instancer, meta)
    writer = None if instancer is None or mode == "semantic" else InstanceWriter(mode, instancer, meta)
    channels = output_channels(task, instancer if writer is not None else None)
    out = Path(output)
    images = find_images(Path(input), exclude=out)
    plans = plan_outputs(images, out, kinds, meta, overwrite, mode)
    paths = [image for image, _ in images]
    workers = default_workers(workers)
    frames: list[FrameOutputs | None] = []
    with staged_folder(out) as stage, ThreadPoolExecutor(workers, thread_name_prefix="road-write") as pool:
        pending: list[Future] = []
        for pred in infer(task, predictor, paths, tile, overlap, batch_size, blend, keep_rgb="overlay" in kinds,
                          workers=workers, progress="predict" if progress else False, channels=channels,
                          confidence=mode == "instance"):
            pending.append(pool.submit(write_prediction, pred, plans[pred.index], stage, meta, alpha, writer,
                                       images[pred.index][1]))
            while len(pending) > 2 * workers:  # bound the frames held in memory
                frames.append(pending.pop(0).result())
        frames += [future.result() for future in pending]
        if writer is not None and mode == "panoptic":
            writer.write_json([f for f in frames if f is not None], stage)
    written = [out / rel for plan in plans for rel in plan.values()]
    written += [out / mask for f in frames if f is not None for mask in f.masks]
    written += [out / PANOPTIC_JSON] if mode == "panoptic" else []
    logging.getLogger(__name__).info("wrote %d files for %d images into %s", len(written), len(images), out)
    return written
