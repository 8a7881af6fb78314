"""What every entry point shares: a user's mistake is one ``error: ...`` line and exit status 2, never a traceback.

* before Hydra composes anything, :func:`check_overrides` refuses an unknown choice of a config group
  (``domain=landcovr``), naming the group, the value and the choices, and :func:`check_keys` a key that is not in the
  config (``domain.inferense.tile=...``, or an old name), naming the closest one;
* :func:`run` turns a :class:`~segsuite.core.errors.UserError`, a missing required value (``input=???``) and Ctrl-C
  (exit 130) into one line; outputs are staged, so an interrupted run leaves nothing behind, and Hydra's run folder
  (``outputs/<verb>/<time>/``: its log and ``.hydra/``) is removed when it holds nothing else (:func:`discard_run_dir`).
"""

from __future__ import annotations

import difflib
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from segsuite.core.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

STARTED = time.time()  # files in the run folder older than this were not written by this command
CONF = files("segsuite.conf")  # the conf/ the package ships (conf/ itself in a clone)
EXAMPLES = {
    "checkpoint": "checkpoint=outputs/train/landcover/<run>/checkpoints/last.ckpt",
    "input": "input=scene.tif (a file or a folder of the domain's inputs)",
    "output": "output=pred/scene.tif (a file, or a folder for several inputs)",
}


def find_user_error(err: BaseException | None) -> UserError | None:
    """The :class:`UserError` behind ``err``, looking through wrappers (Hydra's InstantiationException...)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def group_choices(group: str, conf: Traversable = CONF) -> list[str]:
    """The choices of config group ``group`` (its YAML files), or [] when it is not a group."""
    folder = conf
    for part in group.replace(".", "/").split("/"):
        folder = folder / part
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def check_overrides(args: Sequence[str], conf: Traversable = CONF) -> str | None:
    """The message for the first command-line override that picks an unknown choice of a config group, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # Hydra's grammar errors: say which argument
        return f"cannot read the command line: {str(err).splitlines()[0]}"
    for override in parsed:
        if override.is_delete() or override.key_or_group.startswith("hydra"):
            continue
        choices = group_choices(override.key_or_group, conf)
        value = override.value()
        values = value if isinstance(value, list) else [value]  # sweeps: model=unet,fcn
        if hasattr(value, "list"):
            values = list(value.list)
        for v in values:
            if choices and isinstance(v, str) and v not in choices:
                hint = _file_hint(v) if override.key_or_group == "model" else ""
                return f"unknown {override.key_or_group} {v!r}; choose one of {', '.join(choices)}{hint}"
    return None


def _file_hint(value: str) -> str:
    """For ``model=FILE``: where a model file goes instead (``model=`` is the network config group)."""
    suffix = Path(value).suffix.lower()
    if suffix == ".ckpt":
        return f" (model= picks a network config; a checkpoint goes in checkpoint={value})"
    runtime = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript"}.get(suffix)
    if runtime:
        return f" (model= picks a network config; an exported model goes in runtime={runtime} model_file={value})"
    return ""


RENAMED = {"domain.predict": "domain.inference"}  # keys of earlier versions -> today's


def check_keys(args: Sequence[str], config_name: str) -> str | None:
    """The message for an override of a key the config ``config_name`` does not have (Hydra's "Key ... is not in
    struct"), naming the closest key; None when every key exists. Composes the config once, as Hydra will."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if "=" in a and not a.startswith(("-", "hydra.", "+", "~"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # check_overrides reports grammar errors
        return None
    overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("segsuite.conf", version_base="1.3"):
            try:
                compose(config_name, overrides=overrides)
                return None
            except Exception as err:
                text = f"{err}\n{err.__cause__}"  # Hydra's message, then OmegaConf's with the full key
                match = re.search(r"full_key: ([\w.\-]+)", text)
                if "not in struct" not in text or not match:
                    return None  # Hydra reports anything else
                bad = match.group(1)
                keep = [o for o in overrides if not o.split("=", 1)[0].startswith(bad)]
                return _unknown_key(bad, compose(config_name, overrides=keep))
    except Exception:  # a config that cannot be composed: Hydra reports it
        return None
    finally:
        GlobalHydra.instance().clear()


def _unknown_key(bad: str, cfg: DictConfig) -> str:
    parent, _, name = bad.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    siblings = [f"{parent}.{k}" if parent else str(k) for k in node] if isinstance(node, DictConfig) else []
    close = [RENAMED[bad]] if bad in RENAMED else difflib.get_close_matches(bad, siblings, n=1, cutoff=0.6)
    if close:
        return f"unknown key {bad!r}; did you mean {close[0]!r}?"
    return f"unknown key {bad!r}; {parent or 'the config'} has {', '.join(k.rpartition('.')[2] for k in siblings)}"


def guard(config_name: str | None = None, argv: Sequence[str] | None = None) -> None:
    """Exit 2 with one line if the command line picks an unknown config choice or names a key the config
    ``config_name`` does not have (call before ``@hydra.main``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    message = check_overrides(args) or (check_keys(args, config_name) if config_name else None)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def discard_run_dir() -> None:
    """Remove Hydra's run folder of a refused command when all it holds is what Hydra wrote at the start (the
    job's ``.log``, ``.hydra/``), and the folders above it that this leaves empty, up to the working folder."""
    try:
        from hydra.core.hydra_config import HydraConfig

        folder = Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not run by @hydra.main (tests compose configs)
        return
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    if not folder.is_dir() or any(p.stat().st_mtime < STARTED - 1 or not (p.suffix == ".log" or ".hydra" in p.parts)
                                  for p in files):
        return
    for handler in logging.getLogger().handlers[:]:  # Hydra's file handler writes into the folder
        if isinstance(handler, logging.FileHandler) and folder in Path(handler.baseFilename).parents:
            handler.close()
            logging.getLogger().removeHandler(handler)
    shutil.rmtree(folder, ignore_errors=True)
    cwd, parent = Path.cwd(), folder.parent
    while cwd in parent.parents and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _refuse(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    discard_run_dir()
    sys.exit(status)


def run(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call ``fn(cfg)``; a user error is printed as ``error: ...`` and exits with status 2, Ctrl-C with 130."""
    try:
        missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]  # required top-level values (???)
        if missing:
            raise MissingMandatoryValue(f"missing {missing[0]}")
        return fn(cfg)
    except KeyboardInterrupt:
        _refuse("interrupted; nothing was written", 130)
    except MissingMandatoryValue as err:
        key = str(getattr(err, "full_key", "") or "") or str(err).split()[-1]
        _refuse(f"missing {key}; give it on the command line, e.g. {EXAMPLES.get(key, f'{key}=...')}")
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        _refuse(str(user_error))
