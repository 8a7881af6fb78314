"""Microscopy through the Python API and the demo page's examples: a TIFF's instances equal the CLI's mask, an array
equals its file, the table has areas in µm² and mean intensities."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from segsuite.core.api import Segmenter
from segsuite.core.errors import DataError
from tests.helpers import run_inline


@pytest.fixture(scope="module")
def segmenter(checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(checkpoint, device="cpu")


def test_a_file_and_its_array_give_the_cli_mask(segmenter, checkpoint, tmp_path):
    (image,) = segmenter.reader.examples(tmp_path, segmenter.job())[:1]
    assert run_inline("predict", "domain=microscopy", f"checkpoint={checkpoint}", f"input={image}",
                      f"output={tmp_path / 'cli.tif'}", "task=instance", "device=cpu") == 0
    result = segmenter.predict(image, mode="instance")
    np.testing.assert_array_equal(result.instances, tifffile.imread(tmp_path / "cli.tif"))
    np.testing.assert_array_equal(segmenter.predict(tifffile.imread(image), mode="instance").instances,
                                  result.instances)
    assert result.cell_unit == "µm²" and result.cell_size == pytest.approx(0.25)  # the examples' 0.5 µm pixels
    for row in result.instance_table:
        assert row["µm²"] == pytest.approx(0.25 * row["pixels"]) and "mean_intensity_c0" in row


def test_arrays_of_another_channel_count_are_refused(segmenter):
    with pytest.raises(DataError, match="has 2 channel"):
        segmenter.predict(np.zeros((2, 32, 32), np.uint16))


def test_the_demo_page_previews_images_and_stacks(segmenter, tmp_path):
    (image,) = segmenter.reader.examples(tmp_path, segmenter.job())[:1]
    assert segmenter.reader.preview(image, (192, 192)).shape == (192, 192, 3)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 16, 20), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    assert segmenter.reader.preview(tmp_path / "stack.tif", (3, 16, 20)).shape == (3, 16, 20, 3)
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    assert segmenter.reader.preview(tmp_path / "bad.tif", (16, 16)) is None
