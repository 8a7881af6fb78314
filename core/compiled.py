"""``compile=true``: ``torch.compile`` for training and prediction, with a fallback.

:func:`compile_network` compiles a network in place (``nn.Module.compile``: its state dict keeps its keys, so
checkpoints and exports are unchanged). Where ``torch.compile`` cannot work (no ``torch.compile``, a Python its
Dynamo does not support, no C compiler for the default Inductor backend on the CPU) it logs one warning saying why
and the network runs eagerly; a backend failing later on an odd graph falls back to eager too (Dynamo's
``suppress_errors``). ``compile`` takes ``true`` (Inductor), a backend name (``eager``, ``aot_eager``,
``cudagraphs``...) or ``false``.

``segsuite benchmark compile`` (scripts/benchmarks/compile.py) measures the forward throughput of a U-Net compiled
against eager.
"""

from __future__ import annotations

import copy
import functools
import logging
import shutil
import sys
from typing import Any

import torch
from torch import nn

from segsuite.core.errors import ConfigError

log = logging.getLogger(__name__)


def backend_of(value: Any) -> str | None:
    """``compile=`` as a backend name, or None for eager (false/null)."""
    if value is None or value is False or str(value).lower() in ("false", "none", "null"):
        return None
    if value is True or str(value).lower() == "true":
        return "inductor"
    if not isinstance(value, str):
        raise ConfigError(f"compile={value!r}: expected true, false or a torch.compile backend name (e.g. eager)")
    return value


@functools.cache
def unavailable(backend: str) -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot run here, or None when it can."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        import torch._dynamo as dynamo
    except Exception as err:  # a broken install
        return f"torch._dynamo does not import ({type(err).__name__})"
    if not dynamo.is_dynamo_supported():
        return f"Dynamo does not support Python {sys.version.split()[0]} on {sys.platform}"
    if backend not in dynamo.list_backends(exclude_tags=()):
        return f"unknown backend {backend!r}; choose one of {', '.join(dynamo.list_backends())}"
    if backend == "inductor" and not torch.cuda.is_available() and not any(map(shutil.which, ("cc", "gcc", "clang"))):
        return "Inductor needs a C compiler on the CPU and none was found"
    return None


def compile_network(net: nn.Module, value: Any, what: str = "the network") -> bool:
    """Compile ``net`` in place when ``compile=`` asks for it and can work; returns whether it was compiled."""
    backend = backend_of(value)
    if backend is None:
        return False
    reason = unavailable(backend)
    if reason:
        log.warning("compile=%s: torch.compile is not available here (%s); %s runs eagerly", value, reason, what)
        return False
    import torch._dynamo as dynamo

    dynamo.config.suppress_errors = True  # a graph the backend cannot compile runs eagerly
    net.compile(backend=backend)
    log.info("compile=%s: %s compiled with torch.compile (backend %s); the first batches compile it", value, what,
             backend)
    return True


def for_inference(net: nn.Module, value: Any, device: torch.device) -> nn.Module:
    """``net`` ready for :class:`~segsuite.core.inference.TilePredictor` and compiled when asked: a copy (the caller's
    network, e.g. a cached checkpoint's, is never changed) on ``device``, in eval mode and channels-last (so the
    predictor runs it as given, never a copy of the compiled module)."""
    if backend_of(value) is None:
        return net
    net = copy.deepcopy(net).to(device).eval().to(memory_format=torch.channels_last)
    compile_network(net, value, "prediction")
    return net
