import pytest
import torch

from segsuite.core.errors import ConfigError
from segsuite.core.models import ARCHITECTURES, FCN, create_model

SMP_ARCHS = [a for a in ARCHITECTURES if a != "dpt"]  # DPT needs a ViT encoder: tested on its own below


@pytest.mark.parametrize("in_channels", [1, 3, 13])
@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_forward_backward_on_odd_sizes(arch, in_channels):
    net = create_model(arch, encoder_name="resnet18", in_channels=in_channels, classes=4)
    x = torch.randn(2, in_channels, 37, 53)
    y = net(x)
    assert y.shape == (2, 4, 37, 53)
    y.square().mean().backward()
    # Every parameter the forward pass used gets a gradient (PSPNet leaves its deepest encoder stage unused).
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) > 0.5 * len(list(net.parameters())) and all(torch.isfinite(g).all() for g in grads)


def test_dpt_with_vit_encoder():
    net = create_model("dpt", encoder_name="tu-vit_tiny_patch16_224", in_channels=5, classes=3,
                       dynamic_img_size=True)
    assert net(torch.randn(1, 5, 50, 70)).shape == (1, 3, 50, 70)


def test_fcn_skip_scores_start_at_zero_and_learn():
    # As in the paper's staged training, the skip score layers start at zero, then receive gradients.
    net = FCN(variant="8s", classes=3)
    assert all(p.abs().sum() == 0 for p in net.skip_scores.parameters())
    net(torch.randn(1, 3, 64, 64)).square().mean().backward()
    assert all(s.weight.grad.abs().sum() > 0 for s in net.skip_scores)


def test_fcn_variants_differ_in_skips():
    assert len(FCN(variant="32s").skip_scores) == 0
    assert len(FCN(variant="16s").skip_scores) == 1
    assert len(FCN(variant="8s").skip_scores) == 2


def test_unknown_names_list_valid_choices():
    with pytest.raises(ConfigError, match="unet.*fcn8s"):
        create_model("unetto")
    with pytest.raises(ConfigError, match="did you mean resnet18"):
        create_model("unet", encoder_name="resnet19")
    with pytest.raises(ConfigError, match="timm"):
        create_model("unet", encoder_name="tu-not_a_model")


def test_no_download_by_default(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    create_model("unet", encoder_name="resnet18")
