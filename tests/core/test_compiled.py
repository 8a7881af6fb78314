"""``compile=``: torch.compile in place (checkpoint keys unchanged), one warning and eager where it cannot work."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from segsuite.core import compiled
from segsuite.core.api import Segmenter, compose_predict
from segsuite.core.errors import ConfigError
from tests.helpers import untrained_checkpoint


def test_unavailable_compile_warns_once_and_runs_eagerly(monkeypatch, caplog):
    monkeypatch.setattr(compiled, "unavailable", lambda backend: "Inductor needs a C compiler")
    net = torch.nn.Conv2d(3, 2, 1)
    with caplog.at_level(logging.WARNING, logger="segsuite.core.compiled"):
        assert compiled.compile_network(net, True, "training") is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["compile=True: torch.compile is not available here (Inductor needs a C compiler); "
                        "training runs eagerly"]
    assert net._compiled_call_impl is None


def test_a_compiled_network_keeps_its_keys_and_results():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    keys, x = list(net.state_dict()), torch.randn(1, 3, 8, 8)
    expected = net(x)
    assert compiled.compile_network(net, "eager") is True  # Dynamo's graph capture, no code generation: fast
    torch.testing.assert_close(net(x), expected)
    assert list(net.state_dict()) == keys


def test_predict_with_compile_gives_the_eager_classes(tmp_path):
    meta = {"in_channels": 3, "num_classes": 3, "class_names": ["a", "b", "c"], "ignore_index": 255,
            "patch_size": [32, 32]}
    ckpt = untrained_checkpoint(tmp_path / "m.ckpt", meta, "toy")
    x = np.random.default_rng(0).normal(size=(3, 48, 48)).astype(np.float32)
    results = [Segmenter(compose_predict(["domain=toy", f"checkpoint={ckpt}", "device=cpu", f"compile={c}"]))
               .predict(x, probabilities=True) for c in ("false", "eager")]
    np.testing.assert_allclose(results[1].probabilities, results[0].probabilities, atol=1e-5)
    from segsuite.core.predict import _task

    assert _task(ckpt).net._compiled_call_impl is None  # the cached checkpoint's network was not compiled in place


@pytest.mark.parametrize("value", [3, [1]])
def test_a_bad_compile_value_is_one_line(value):
    with pytest.raises(ConfigError, match=r"compile=.*expected true, false or a torch.compile backend"):
        compiled.backend_of(value)
