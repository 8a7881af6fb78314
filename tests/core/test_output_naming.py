"""The output naming rule (segsuite.core.pipeline.is_folder_output): ``output`` is a folder when spelt as one (a
trailing slash, an existing folder) or when the input names several inputs or could (a folder, a list, a pattern,
even with one match); else it is the one input's file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segsuite.domains.toy.data import toy_sample
from tests.export_checks import predict_with


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", toy_sample(3, 40, 3, 3, 255)[0])
    return folder


@pytest.fixture
def ckpt(toy_run) -> str:
    return f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}"


def _predict(ckpt: str, input: str, output: str) -> None:
    from segsuite.core.predict import predict
    from tests.helpers import compose_config

    predict(compose_config("predict", ["domain=toy", ckpt, f"input={input}", f"output={output}",
                                       f"run_dir={Path(output.rstrip('/')).parent}"]))


@pytest.mark.parametrize("spell", [
    lambda d, out: (str(d / "a.npy"), f"{out}/"),          # a new folder, spelt with a trailing slash
    lambda d, out: (f"[{d / 'a.npy'}]", str(out)),         # a list of one input
    lambda d, out: (str(d / "*.npy"), str(out)),           # a pattern that matches one input
    lambda d, out: (str(d), str(out)),                     # a folder of inputs
], ids=["trailing-slash", "list", "pattern", "folder"])
def test_a_folder_when_spelt_or_implied(ckpt, images, tmp_path, spell):
    input, output = spell(images, tmp_path / "res")
    _predict(ckpt, input, output)
    assert (tmp_path / "res").is_dir() and [p.name for p in (tmp_path / "res").iterdir()] == ["a.npy"]


def test_one_input_and_a_plain_name_is_a_file(ckpt, images, tmp_path):
    _predict(ckpt, str(images / "a.npy"), str(tmp_path / "res.npy"))
    assert (tmp_path / "res.npy").is_file()


def test_an_existing_folder_is_a_folder(ckpt, images, tmp_path):
    (tmp_path / "res").mkdir()
    assert predict_with("toy", images / "a.npy", tmp_path / "res", ckpt) == 0
    assert (tmp_path / "res" / "a.npy").is_file()
