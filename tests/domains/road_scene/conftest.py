"""Shared fixtures for the road-scene domain: tiny generated datasets in each supported layout."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segsuite.core.contracts import DataMeta, Job, Mode, ModelInfo
from segsuite.core.inference import InferenceOptions, TilePredictor
from segsuite.core.instances import Instancer
from segsuite.core.pipeline import run_evaluate, run_predict
from segsuite.core.predict import FirstChannels
from segsuite.core.task import SegmentationTask
from segsuite.domains.road_scene.datasets import IMAGENET_MEAN, IMAGENET_STD
from segsuite.domains.road_scene.reader import ImageReader
from segsuite.domains.road_scene.scorers import RoadSceneEvaluation
from segsuite.domains.road_scene.synthetic import make_dataset
from segsuite.domains.road_scene.writer import SceneWriter
from tests.helpers import run_script


def _write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write ``array`` as PNG (creating parents), optionally converting to a PIL ``mode`` first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path)
    return path


def _random_photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random uint8 RGB photo ``(H, W, 3)``."""
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def write_png():
    """``write_png(path, array, mode=None)``: write a PNG, creating parent folders."""
    return _write_png


@pytest.fixture(scope="session")
def cityscapes_root(tmp_path_factory) -> Path:
    """Synthetic Cityscapes-layout set: 4 train, 3 val, 1 test scenes of 64x128."""
    return make_dataset(tmp_path_factory.mktemp("cs") / "cityscapes", n_train=4, n_val=3, size=(64, 128), seed=3,
                        n_test=1)


@pytest.fixture
def kitti_root(tmp_path) -> Path:
    """KITTI road layout with 5 images (24x40) whose gt holds road, non-road and don't-care colours."""
    rng = np.random.default_rng(0)
    root = tmp_path / "kitti"
    for i, cat in enumerate(["um", "umm", "uu", "um", "uu"]):
        num = f"{i:06d}"
        gt = np.zeros((24, 40, 3), np.uint8)
        gt[:, :] = (255, 0, 0)  # non-road
        gt[12:, 8:32] = (255, 0, 255)  # road
        gt[:3] = 0  # don't care
        _write_png(root / "training" / "image_2" / f"{cat}_{num}.png", _random_photo(rng, 24, 40))
        _write_png(root / "training" / "gt_image_2" / f"{cat}_road_{num}.png", gt)
        _write_png(root / "training" / "gt_image_2" / f"{cat}_lane_{num}.png", gt)  # lane gt: must be ignored
    return root


class Pointwise:
    """Tasks whose network is a 1x1 convolution, so the answer at every pixel is computable by hand."""

    @staticmethod
    def task(meta: dict, weight: np.ndarray, bias: np.ndarray) -> SegmentationTask:
        """``logits = weight @ x + bias`` per pixel; ``weight`` (K, 3), ``bias`` (K,)."""
        k = weight.shape[0]
        task = SegmentationTask(model={"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": k,
                                       "kernel_size": 1},
                                num_classes=k, class_names=meta["class_names"], data_meta=meta, domain="road_scene")
        with torch.no_grad():
            task.net.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).view(k, 3, 1, 1))
            task.net.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        return task.eval()

    @staticmethod
    def rgb_argmax(meta: dict) -> SegmentationTask:
        """19 classes; the class is the argmax of the normalised R, G, B (train ids 0, 1, 2), never another."""
        weight = np.zeros((19, 3))
        weight[:3] = np.eye(3)
        return Pointwise.task(meta, weight, np.r_[np.zeros(3), np.full(16, -1e3)])

    @staticmethod
    def normalised(rgb_uint8: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> the network's input values per pixel, ``(H, W, 3)``."""
        return (rgb_uint8 / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)

    @staticmethod
    def expected(rgb_uint8: np.ndarray) -> np.ndarray:
        """The ``rgb_argmax`` task's classes ``(H, W)``, by hand."""
        return Pointwise.normalised(rgb_uint8).argmax(-1)


@pytest.fixture
def pointwise() -> type[Pointwise]:
    return Pointwise


class Pipeline:
    """A task run through the core pipeline in this process, as ``scripts/predict.py`` / ``evaluate.py`` run a
    checkpoint (CPU; the checkpoint is named ``model.ckpt`` in reports)."""

    @staticmethod
    def job(task: SegmentationTask, mode: str = "semantic", instancer: Instancer | None = None,
            overwrite: bool = False, **options) -> Job:
        hp = task.hparams
        meta = DataMeta.from_dict({"class_names": hp.class_names, "num_classes": hp.num_classes,
                                   "ignore_index": hp.ignore_index, **dict(hp.data_meta)})
        border = instancer is not None and instancer.uses_border(task.border_channel)
        channels = hp.num_classes + int(border)
        net = task.net if channels == task.out_channels else FirstChannels(task.net, channels)
        model = ModelInfo(TilePredictor(net, device="cpu"), meta, channels, border, "model.ckpt", "road_scene")
        options = {"tile": (1024, 2048), "overlap": (128, 256), "batch_size": 2, **options}
        return Job(model, Mode.parse(mode), instancer, InferenceOptions(**options), overwrite)

    @staticmethod
    def predict(task: SegmentationTask, input: Path, output: Path, outputs=("label", "color", "overlay"),
                **job) -> list[Path]:
        return run_predict(ImageReader(), SceneWriter(outputs), Pipeline.job(task, **job), input,
                           output)

    @staticmethod
    def evaluate(task: SegmentationTask, datasets: dict, output: Path, **job) -> dict:
        return run_evaluate(RoadSceneEvaluation(), ImageReader(), Pipeline.job(task, **job), datasets, output)


@pytest.fixture
def pipeline() -> type[Pipeline]:
    return Pipeline


# A training run on tiny synthetic scenes through the real entry point: 120 scenes of 32x64, one epoch of
# 30 steps (enough for BatchNorm's running statistics to settle), weights-only checkpoints (3x smaller, faster to
# write and load), shared by the entry-point tests.
TINY_TRAIN = [
    "domain=road_scene", "domain.datamodule.datasets.synthetic_size=[32,64]",
    "domain.datamodule.datasets.synthetic_n_train=120", "domain.datamodule.datasets.synthetic_n_val=4",
    "domain.datamodule.datasets.crop_size=[32,64]", "domain.datamodule.datasets.scale_range=[1,1]",
    "domain.datamodule.batch_size=4", "optimizer.lr=3e-3", "trainer.max_epochs=1", "logger=none",
    "trainer.enable_model_summary=false", "trainer.enable_progress_bar=false",
    "+callbacks.checkpoint.save_weights_only=true",
]


@pytest.fixture(scope="session")
def run_entry():
    """``run_entry((script, *overrides), ...)``: entry points run side by side as a user runs them, one CPU thread
    each (torch processes sharing two cores slow down many times over with more), returning their
    CompletedProcesses; ``check=True`` fails on a non-zero exit."""

    def run(*runs: tuple[str, ...], check: bool = False) -> list[subprocess.CompletedProcess]:
        with pytest.MonkeyPatch.context() as env, ThreadPoolExecutor(len(runs)) as pool:
            env.setenv("OMP_NUM_THREADS", "1")
            return list(pool.map(lambda args: run_script(*args, check=check), runs))

    return run


@pytest.fixture(scope="session")
def road_run(tmp_path_factory, run_entry) -> dict[str, Path]:
    """``{"data": synthetic Cityscapes-layout root, "ckpt": last checkpoint}`` of one tiny training run."""
    base = tmp_path_factory.mktemp("road_run")
    run_entry(("train", *TINY_TRAIN, f"domain.datamodule.datasets.root={base / 'data'}",
               f"hydra.run.dir={base / 'run'}"), check=True)
    return {"data": base / "data", "ckpt": base / "run" / "checkpoints" / "last.ckpt"}
