"""Predict through the core pipeline in-process with a pointwise (1x1 conv) network, whose answer at each pixel is
computable by hand."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.io import STAGING_PREFIX
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.labels import cityscapes_train_id_to_id
from segsuite.domains.road_scene.writer import SceneWriter


@pytest.fixture(scope="module")
def cs_meta(cityscapes_root) -> dict:
    return build_datasets(str(cityscapes_root), crop_size=[32, 32])["train"].meta


def test_tiled_prediction_keeps_geometry_and_writes_official_ids(cs_meta, tmp_path, write_png, pointwise, pipeline):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (45, 77, 3), dtype=np.uint8)
    image = write_png(tmp_path / "in" / "city" / "city_000001_000002_leftImg8bit.png", photo)
    task = pointwise.rgb_argmax(cs_meta)
    written = pipeline.predict(task, tmp_path / "in", tmp_path / "out", tile=[16, 24], overlap=[4, 6], batch_size=3)
    rel = Path("city") / "city_000001_000002_leftImg8bit.png"
    assert sorted(written) == sorted(tmp_path / "out" / kind / rel for kind in ("labels", "color", "overlay"))
    label_ids = np.asarray(Image.open(tmp_path / "out" / "labels" / rel))
    assert label_ids.dtype == np.uint8 and label_ids.shape == (45, 77)
    np.testing.assert_array_equal(label_ids, cityscapes_train_id_to_id()[pointwise.expected(photo)])
    colour = np.asarray(Image.open(tmp_path / "out" / "color" / rel).convert("RGB"))  # an indexed-colour PNG
    np.testing.assert_array_equal(colour, np.array(cs_meta["class_colors"], np.uint8)[pointwise.expected(photo)])
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlay" / rel))
    assert overlay.shape[0] > 45 and overlay.shape[2] == 3  # the frame, then the legend strip below it
    np.testing.assert_allclose(overlay[:45, :77], 0.5 * photo + 0.5 * colour, atol=1)
    assert image.is_file() and not list(tmp_path.rglob(STAGING_PREFIX + "*"))


def test_reduced_training_scale_is_predicted_at_full_resolution(cs_meta, tmp_path, write_png, pointwise, pipeline):
    photo = np.zeros((41, 66, 3), np.uint8)
    photo[:, :33] = (250, 10, 10)  # red: class 0 (road)
    photo[:, 33:] = (10, 10, 250)  # blue: class 2 (building)
    write_png(tmp_path / "a.png", photo)
    task = pointwise.rgb_argmax({**cs_meta, "train_scale": 0.5})
    pipeline.predict(task, tmp_path / "a.png", tmp_path / "out", outputs=["label"])
    ids = np.asarray(Image.open(tmp_path / "out" / "labels" / "a.png"))
    assert ids.shape == (41, 66)  # the network saw 20x33; its logits are upsampled back
    assert (ids[:, :31] == 7).all() and (ids[:, 35:] == 11).all()  # road / building ids away from the edge


def test_grey_and_rgba_inputs_are_converted(cs_meta, tmp_path, write_png, pointwise, pipeline):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    write_png(tmp_path / "in" / "rgba.png", np.dstack([photo, np.full((20, 30), 7, np.uint8)]))
    write_png(tmp_path / "in" / "grey.png", grey)
    task = pointwise.rgb_argmax(cs_meta)
    pipeline.predict(task, tmp_path / "in", tmp_path / "out", outputs=["label"])
    lut = cityscapes_train_id_to_id()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "labels" / "rgba.png")),
                                  lut[pointwise.expected(photo)])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "labels" / "grey.png")),
                                  lut[pointwise.expected(np.repeat(grey[..., None], 3, axis=2))])


def test_kitti_model_writes_devkit_probability_pngs(kitti_root, tmp_path, pointwise, pipeline):
    meta = build_datasets(str(kitti_root), layout="kitti", crop_size=[16, 16])["train"].meta
    # logit(road) - logit(non-road) = 4 * (normalised R - normalised G): P(road) by hand
    task = pointwise.task(meta, np.array([[0, 0, 0], [4.0, -4.0, 0]]), np.zeros(2))
    image = kitti_root / "training" / "image_2" / "um_000000.png"
    written = pipeline.predict(task, image, tmp_path / "out", outputs=["label", "color"])
    label = tmp_path / "out" / "labels" / "um_road_000000.png"
    assert sorted(written) == [tmp_path / "out" / "color" / "um_000000.png", label]
    prob_png = np.asarray(Image.open(label))
    normalised = pointwise.normalised(np.asarray(Image.open(image)))
    p_road = 1 / (1 + np.exp(-4 * (normalised[..., 0] - normalised[..., 1])))
    assert prob_png.dtype == np.uint8 and prob_png.shape == p_road.shape
    assert np.abs(prob_png.astype(int) - np.rint(255 * p_road)).max() <= 1


def test_refuses_existing_outputs_before_any_work(cs_meta, tmp_path, write_png, pointwise, pipeline):
    write_png(tmp_path / "in" / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_png(tmp_path / "in" / "b.png", np.zeros((8, 8, 3), np.uint8))
    existing = write_png(tmp_path / "out" / "labels" / "b.png", np.zeros((8, 8), np.uint8))
    task = pointwise.rgb_argmax(cs_meta)
    with pytest.raises(DataError, match=f"{existing}.*already exists"):
        pipeline.predict(task, tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["b.png", "labels"]
    pipeline.predict(task, tmp_path / "in", tmp_path / "out", overwrite=True)
    assert len(list((tmp_path / "out").rglob("*.png"))) == 6
    assert (np.asarray(Image.open(existing)) == 11).all()  # replaced: black -> normalised B wins -> building


def test_broken_image_mid_run_leaves_nothing(cs_meta, tmp_path, write_png, pointwise, pipeline):
    for name in ("a", "c"):
        write_png(tmp_path / "in" / f"{name}.png", np.zeros((16, 16, 3), np.uint8))
    good = (tmp_path / "in" / "a.png").read_bytes()
    (tmp_path / "in" / "b.png").write_bytes(good[: len(good) // 2])  # header fine, pixel data truncated
    task = pointwise.rgb_argmax(cs_meta)
    with pytest.raises(DataError, match="b.png"):
        pipeline.predict(task, tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_bad_options_and_inputs_are_named(cs_meta, tmp_path, write_png, pointwise, pipeline):
    task = pointwise.rgb_argmax(cs_meta)
    run = lambda src, **kw: pipeline.predict(task, src, tmp_path / "out", **kw)  # noqa: E731
    with pytest.raises(DataError, match="does not exist"):
        run(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images \(.png, .*\) in input folder .*empty \(searched recursively\)"):
        run(tmp_path / "empty")
    write_png(tmp_path / "in" / "x.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "in" / "y.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="y.png"):
        run(tmp_path / "in")
    (tmp_path / "in" / "y.png").unlink()
    write_png(tmp_path / "in" / "x.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="x.jpg.*would both be written"):
        run(tmp_path / "in")
    with pytest.raises(ConfigError, match="outputs"):
        run(tmp_path / "in" / "x.png", outputs=["labels"])
    with pytest.raises(ConfigError, match="alpha"):
        SceneWriter(alpha=1.5)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="output .*file is a file"):
        pipeline.predict(task, tmp_path / "in" / "x.png", tmp_path / "file")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_inside_the_input_is_never_read(cs_meta, tmp_path, write_png, pointwise, pipeline):
    write_png(tmp_path / "in" / "a.png", np.zeros((8, 8, 3), np.uint8))
    task = pointwise.rgb_argmax(cs_meta)
    first = pipeline.predict(task, tmp_path / "in", tmp_path / "in" / "pred")
    assert len(first) == 3
    assert pipeline.predict(task, tmp_path / "in", tmp_path / "in" / "pred", overwrite=True) == first
