"""The CUDA path of the engine (pinned host batches, side-stream copies) gives what the CPU path gives.
Skipped without a GPU; run on one with `pytest tests/core/inference/test_engine_cuda.py`."""

import numpy as np
import pytest
import torch

from segsuite.core.inference import TilePredictor, predict_array

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("tile,overlap,batch", [((32, 32), (8, 8), 4), ((50, 33), (13, 7), 5), ((256, 256), (0, 0), 2)])
def test_identity_on_cuda_reproduces_the_input(tile, overlap, batch):
    image = np.random.default_rng(0).normal(size=(3, 301, 277)).astype(np.float32)
    out = predict_array(TilePredictor(torch.nn.Identity(), "cuda"), image, 3, tile=tile, overlap=overlap,
                        batch_size=batch)
    np.testing.assert_allclose(out.cpu().numpy(), image, rtol=1e-5, atol=1e-5)


def test_a_network_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 3, padding=1))
    image = np.random.default_rng(1).normal(size=(4, 200, 180)).astype(np.float32)
    kwargs = dict(tile=(64, 64), overlap=(16, 16), batch_size=3)
    cpu = predict_array(TilePredictor(net, "cpu"), image, 5, **kwargs).numpy()
    cuda = predict_array(TilePredictor(net.cuda(), "cuda", tta_flips=[]), image, 5, **kwargs).cpu().numpy()
    np.testing.assert_allclose(cuda, cpu, rtol=1e-3, atol=1e-3)
