"""``model.encoder_weights=PATH``: a torchvision/timm backbone's state dict from disk, first conv adapted."""

import os

import pytest
import torch
import torchvision

from segsuite.core.checkpoint import load_task
from segsuite.core.errors import ConfigError
from segsuite.core.models import create_model
from segsuite.core.task import SegmentationTask


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """A torchvision resnet18 state dict with a known perturbation (every tensor + 0.5), wrapped as many tools
    save it: ``{"state_dict": {"module.<key>": ...}}``."""
    torch.manual_seed(0)
    state = {k: v + 0.5 if v.is_floating_point() else v
             for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}, path)
    return str(path), state


def test_a_local_file_loads_into_the_encoder_and_the_first_conv_is_adapted(resnet18_file):
    path, state = resnet18_file
    net = create_model("unet", "resnet18", encoder_weights=path, in_channels=4, classes=3)
    encoder = net.net.encoder.state_dict()
    for key in ("layer3.1.conv2.weight", "bn1.running_var", "layer4.0.downsample.1.bias"):
        torch.testing.assert_close(encoder[key], state[key])
    rgb = state["conv1.weight"]  # (64, 3, 7, 7) -> 4 bands: R, G, B, R, scaled by 3/4 (smp's rule)
    torch.testing.assert_close(encoder["conv1.weight"], torch.cat([rgb, rgb[:, :1]], 1) * 0.75)
    one_band = create_model("fcn", "resnet18", encoder_weights=path, in_channels=1, classes=2)
    torch.testing.assert_close(one_band.net.encoder.conv1.weight, rgb.sum(1, keepdim=True))
    assert net(torch.zeros(1, 4, 40, 40)).shape == (1, 3, 40, 40)


def test_a_rebuilt_checkpoint_does_not_read_the_weights_file_again(resnet18_file, tmp_path):
    path = tmp_path / "copy.pth"
    path.write_bytes(open(resnet18_file[0], "rb").read())
    model = {"_target_": "segsuite.core.models.create_model", "arch": "unet", "encoder_name": "resnet18",
             "encoder_weights": str(path), "in_channels": 4, "classes": 3, "encoder_depth": 3,
             "decoder_channels": [16, 8, 4]}
    task = SegmentationTask(model=model, num_classes=3)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, ckpt)
    os.remove(path)  # gone: predict and evaluate must not need it
    loaded = load_task(ckpt)
    torch.testing.assert_close(loaded.net.net.encoder.conv1.weight, task.net.net.encoder.conv1.weight)


def test_a_timm_encoder_loads_its_own_checkpoint(tmp_path):
    import timm

    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "timm_resnet18.pth"
    torch.save(source.state_dict(), path)
    net = create_model("unet", "tu-resnet18", encoder_weights=str(path), in_channels=3, classes=2)
    torch.testing.assert_close(net.net.encoder.model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


def _fails(tmp_path, content, name="bad.pth", **kwargs) -> str:
    path = tmp_path / name
    if content is not None:
        torch.save(content, path) if not isinstance(content, bytes) else path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        create_model("unet", kwargs.get("encoder", "resnet18"), encoder_weights=str(path), in_channels=4, classes=2)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


class Code:  # an object that would need unpickling of code
    pass


def test_bad_files_get_one_line_naming_the_file(tmp_path, resnet18_file):
    assert "does not exist" in _fails(tmp_path, None, "missing.pth")
    assert "no tensor" in _fails(tmp_path, {"foo.weight": torch.zeros(3)})
    assert "needs code unpickled (tests.core.models.test_pretrained.Code)" in _fails(
        tmp_path, {"state_dict": {}, "extra": Code()})
    assert "cannot read" in _fails(tmp_path, b"not a torch file", "junk.pt")
    message = _fails(tmp_path, torch.load(resnet18_file[0], weights_only=True), encoder="resnet34")
    assert "missing: layer1.2." in message  # resnet18's file lacks resnet34's blocks
    small = {k: v[..., :1] if k == "layer1.0.conv1.weight" else v for k, v in resnet18_file[1].items()}
    assert "shapes differ: layer1.0.conv1.weight (64, 64, 3, 1) vs (64, 64, 3, 3)" in _fails(tmp_path, small)
