"""The predictor never modifies the caller's network (device, train/eval mode, memory format) and gives the same
outputs as the network itself."""

import torch

from segsuite.core.inference import TilePredictor


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 4, 1))


def test_the_callers_network_is_left_as_it_was():
    net = _net()  # in training mode, contiguous weights
    x = torch.randn(2, 3, 24, 24)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    predictor = TilePredictor(net, "cpu", tta_flips=[-1])
    out = predictor(x)
    assert net.training and all(m.training for m in net.modules())
    assert net[0].weight.is_contiguous() and not net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm's running stats too
    assert predictor.model is not net and not predictor.model.training
    assert predictor.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = (net.eval()(x) + net(x.flip(-1)).flip(-1)) / 2
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_a_network_ready_to_run_is_run_as_given():
    net = _net().eval().to(memory_format=torch.channels_last)
    predictor = TilePredictor(net, "cpu")
    predictor(torch.randn(1, 3, 8, 8))
    assert predictor.model is net  # nothing to change: no copy


def test_an_eval_network_in_the_plain_layout_is_copied_only_for_2d_channels_last():
    net = _net().eval()
    plain = TilePredictor(net, "cpu", channels_last=False)
    plain(torch.randn(1, 3, 8, 8))
    assert plain.model is net and net[0].weight.is_contiguous()
    fast = TilePredictor(net, "cpu")
    assert fast.model is net  # copied on the first 2D batch, when the layout is needed
    fast(torch.randn(1, 3, 8, 8))
    assert fast.model is not net and net[0].weight.is_contiguous()
    assert fast.model[0].weight.is_contiguous(memory_format=torch.channels_last)
