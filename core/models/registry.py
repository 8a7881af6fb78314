"""Networks are rebuilt from plain data only through the factories listed here.

A checkpoint stores its network as ``{"_target_": NAME, **arguments}``. Handing that to ``hydra.utils.instantiate``
would import and call whatever NAME says (any callable that writes files or starts processes), so a checkpoint
received by e-mail could run code. Instead NAME must be one of :data:`NETWORK_FACTORIES`, the arguments must be
plain values (no nested ``_target_``), and the factory is called directly. Checked before anything is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from torch import nn

from segsuite.core.errors import ConfigError

# name in a checkpoint or config -> "module:function" of the project's own network factories
# (earlier versions wrote the names without "segsuite.": those stay, as aliases, so their checkpoints load)
NETWORK_FACTORIES: dict[str, str] = {
    "segsuite.core.models.create_model": "segsuite.core.models.factory:create_model",
    "core.models.create_model": "segsuite.core.models.factory:create_model",
    "segsuite.core.models.factory.create_model": "segsuite.core.models.factory:create_model",
    "core.models.factory.create_model": "segsuite.core.models.factory:create_model",
    "segsuite.core.models.create_dynunet": "segsuite.core.models.dynunet:create_dynunet",
    "core.models.create_dynunet": "segsuite.core.models.dynunet:create_dynunet",
    "torch.nn.Conv2d": "torch.nn:Conv2d",  # a bare (1x1) convolution: linear baselines and the tests' tiny networks
}


def canonical_name(name: str) -> str:
    """A listed factory's current name: checkpoints written before the ``segsuite`` import root name ours without."""
    return f"segsuite.{name}" if name.split(".")[0] in ("core", "domains") else name


def _plain_value(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_target_" not in value and all(isinstance(k, str) and _plain_value(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain_value(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def check_network_config(config: Mapping[str, Any], origin: str = "the model config") -> str:
    """The current name of ``config``'s factory, checked: a listed factory with plain arguments (ConfigError
    otherwise). A name written by an earlier version is replaced in ``config`` by the current one."""
    target = config.get("_target_") if isinstance(config, Mapping) else None
    if target not in NETWORK_FACTORIES:
        raise ConfigError(f"{origin} names the network factory {target!r}, which is not one of this project's "
                          f"({', '.join(sorted(NETWORK_FACTORIES))}); refusing to build it")
    bad = [k for k, v in config.items() if k != "_target_" and not _plain_value(v)]
    if bad:
        raise ConfigError(f"{origin}: network arguments {bad} are not plain values (nested _target_ or objects); "
                          "refusing to build it")
    name = canonical_name(target)
    if name != target and isinstance(config, MutableMapping):
        config["_target_"] = name  # an earlier checkpoint: resuming compares this with the config
    return name


def build_network(config: Mapping[str, Any], origin: str = "the model config") -> nn.Module:
    """Build the network ``config`` describes with the project's factory (see the module docstring)."""
    target = check_network_config(config, origin)
    module, name = NETWORK_FACTORIES[target].split(":")
    factory: Callable[..., nn.Module] = getattr(__import__(module, fromlist=[name]), name)
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    return factory(**kwargs)
