"""An exported TorchScript file is a program: predict refuses to load one unless the user trusts it
(``trust_model=true`` or the file's sha256), and reads its metadata without running it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from segsuite.core.runtime import EXTRA_FILE, file_sha256, read_metadata
from segsuite.domains.toy.data import toy_sample
from tests.export_checks import predict_with

METADATA = {"format": "torchscript", "domain": "toy", "num_classes": 3, "class_names": ["a", "b", "c"],
            "border_channel": False, "stride": 1, "min_size": 0,
            "data_meta": {"in_channels": 3, "num_classes": 3, "class_names": ["a", "b", "c"], "ignore_index": 255}}


class Crafted(torch.nn.Module):
    """Identity network whose ``__setstate__``, run by ``torch.jit.load``, creates the file ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = bool(torch.from_file(self.target, True, 8).numel() > 0) and state[1]  # writes the file


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path, Path]:
    """(the crafted model file, the file its loading would create, an input image)."""
    target, model = tmp_path / "written_by_the_model", tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.jit.script(Crafted(str(target)))
        torch.jit.save(program, str(model), _extra_files={EXTRA_FILE: json.dumps(METADATA)})
    image = tmp_path / "in.npy"
    np.save(image, toy_sample(7, 40, 3, 3, 255)[0])
    return model, target, image


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_an_untrusted_torchscript_file_is_never_loaded(crafted, tmp_path, capsys):
    model, target, image = crafted
    assert predict_with("toy", image, tmp_path / "out.npy", "runtime=torchscript", f"model_file={model}") == 2
    message = _one_line(capsys)
    assert str(model) in message and "trust_model=true" in message and "runtime=onnx" in message
    assert not target.exists() and not (tmp_path / "out.npy").exists()
    assert read_metadata(model)["format"] == "torchscript" and not target.exists()  # metadata without running it


def test_a_wrong_sha256_is_refused_before_loading(crafted, tmp_path, capsys):
    model, target, image = crafted
    assert predict_with("toy", image, tmp_path / "out.npy", "runtime=torchscript", f"model_file={model}",
                        f"trust_model={'0' * 63}f") == 2
    assert f"has sha256 {file_sha256(model)}" in _one_line(capsys) and not target.exists()


def test_a_trusted_file_is_loaded_which_is_why_trust_is_asked(crafted, tmp_path):
    model, target, image = crafted
    assert predict_with("toy", image, tmp_path / "out.npy", "runtime=torchscript", f"model_file={model}",
                        f"trust_model={file_sha256(model)}") == 0
    assert target.exists()  # the crafted file really does write: the refusals above are what protect the user


def _onnx_file(path: Path, metadata: dict) -> Path:
    """A hand-built ONNX network (a 1x1 convolution, 3 channels in, 3 out) with the given segsuite metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, "height", "width"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"segsuite": json.dumps(metadata)})
    onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize("change, message", [
    ({"data_meta": {**METADATA["data_meta"], "in_channels": 4}}, "takes 3 input channels but its metadata says 4"),
    ({"stride": 0}, "has stride=0; expected a whole number >= 1"),
])
def test_an_onnx_file_whose_metadata_lies_is_one_line(tmp_path, capsys, change, message):
    model = _onnx_file(tmp_path / "model.onnx", {**METADATA, "format": "onnx", **change})
    image = tmp_path / "in.npy"
    np.save(image, toy_sample(7, 40, 4, 3, 255)[0])
    assert predict_with("toy", image, tmp_path / "out.npy", "runtime=onnx", f"model_file={model}") == 2
    line = _one_line(capsys)
    assert str(model) in line and message in line


def test_the_hand_built_onnx_file_runs_when_its_metadata_is_true(tmp_path):
    image = tmp_path / "in.npy"
    np.save(image, toy_sample(7, 40, 3, 3, 255)[0])
    model = _onnx_file(tmp_path / "model.onnx", {**METADATA, "format": "onnx"})
    assert predict_with("toy", image, tmp_path / "out.npy", "runtime=onnx", f"model_file={model}") == 0
