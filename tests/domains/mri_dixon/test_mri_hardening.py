"""MRI inputs and outputs named as the user spelt them: a channel list that does not match the case files is
refused (as nnU-Net does), and a non-NIfTI output file name is refused instead of becoming a folder."""

from __future__ import annotations

import json

import pytest

from segsuite.core.contracts import DataMeta, Item, Job, Mode, ModelInfo
from segsuite.core.errors import DataError
from segsuite.domains.mri_dixon.cases import list_cases, read_dataset_json
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.writer import DixonWriter


def test_a_dataset_json_listing_fewer_channels_than_the_files_is_refused(small_dataset):
    path = small_dataset / "dataset.json"
    content = json.loads(path.read_text())
    n = len(content["channel_names"])
    content["channel_names"] = {"0": content["channel_names"]["0"], "1": content["channel_names"]["1"]}
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as refused:
        list_cases(read_dataset_json(small_dataset))
    message = str(refused.value)
    assert "extra channel files" in message and f"_{n - 1:04d}.nii.gz" in message and "lists 2 channel(s)" in message


def test_the_phantom_passes_the_channel_check(small_dataset):
    assert len(list_cases(read_dataset_json(small_dataset))) == 3


@pytest.fixture
def meta(small_dataset) -> dict:
    return build_datasets(str(small_dataset), patch_size=[16, 16])["train"].meta


def _outputs(meta, output, folder: bool):
    model = ModelInfo(None, DataMeta.from_dict(meta), meta["num_classes"], False)
    return DixonWriter().outputs(Item("phantom_000", {}), output, folder, Job(model, Mode.SEMANTIC))


def test_a_non_nifti_output_name_is_refused(tmp_path, meta):
    with pytest.raises(DataError, match="must be a .nii/.nii.gz file name for one case, or a folder \\(end it"):
        _outputs(meta, tmp_path / "seg.png", False)
    assert _outputs(meta, tmp_path / "seg", True)["labels"] == tmp_path / "seg" / "phantom_000.nii.gz"
    assert _outputs(meta, tmp_path / "seg", False)["labels"] == tmp_path / "seg" / "phantom_000.nii.gz"  # bare name
    assert _outputs(meta, tmp_path / "seg.nii.gz", False)["labels"] == tmp_path / "seg.nii.gz"
