"""The ``segsuite`` command: ``segsuite COMMAND [ARGS ...]`` runs scripts/COMMAND.py, shipped as segsuite.scripts.

Every module of scripts/ but the clone-only demo is a command, run exactly as ``python scripts/COMMAND.py ARGS``
runs it in a clone: the Hydra commands (train, predict, evaluate, export) read ``COMMAND.yaml`` from the packaged
conf (``pkg://segsuite.conf``) and take the same overrides; the others (benchmark, serve) parse their own options.
``segsuite --help`` lists the commands and the config groups with their choices, read from the packaged conf
without importing torch.
"""

from __future__ import annotations

import ast
import runpy
import sys
from collections.abc import Sequence
from importlib.resources import files
from typing import TYPE_CHECKING

from segsuite import __version__
from segsuite.core.glibc import one_heap

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SCRIPTS = "segsuite.scripts"
CONF = "segsuite.conf"
CLONE_ONLY = {"demo"}  # `make demo` trains into the clone's outputs/
SUMMARIES = {  # the known commands, listed in this order; any other module of scripts/ by its docstring
    "train": "fit a model, then test it",
    "predict": "predict new inputs with a checkpoint",
    "evaluate": "score a checkpoint on a labelled split",
    "benchmark": "measure speed and accuracy ratios (NAME ... [--quick])",
    "export": "export a checkpoint as ONNX or TorchScript",
    "serve": "the demo web page over trained checkpoints",
}
EXAMPLES = """\
examples:
  segsuite train domain=landcover model=fcn trainer.max_epochs=5
  segsuite predict domain=landcover checkpoint=CKPT input=scene.tif output=pred.tif
  segsuite evaluate domain=landcover checkpoint=CKPT output_dir=eval/
  segsuite train --help     (Hydra's help: the composed config and how to override it)"""


def commands() -> dict[str, str]:
    """Each command (a module of segsuite.scripts) and its one-line summary."""
    found = {}
    for entry in files(SCRIPTS).iterdir():
        name = entry.name.removesuffix(".py")
        if entry.name.endswith(".py") and not name.startswith("_") and name not in CLONE_ONLY:
            found[name] = SUMMARIES.get(name) or _summary(entry.read_text(encoding="utf-8"))
    order = list(SUMMARIES)
    return dict(sorted(found.items(), key=lambda item: (order.index(item[0]) if item[0] in order else len(order),
                                                        item[0])))


def _summary(source: str) -> str:
    return (ast.get_docstring(ast.parse(source)) or "").strip().split("\n")[0]


def config_groups() -> dict[str, list[str]]:
    """Each config group of the packaged conf (nested ones as ``a/b``) and its choices."""
    groups: dict[str, list[str]] = {}

    def visit(folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                choices = sorted(e.name.removesuffix(".yaml") for e in entry.iterdir() if e.name.endswith(".yaml"))
                if choices:
                    groups[prefix + entry.name] = choices
                visit(entry, f"{prefix}{entry.name}/")

    visit(files(CONF), "")
    return groups


def usage() -> str:
    """The text of ``segsuite --help``."""
    found, groups, conf = commands(), config_groups(), files(CONF)
    width = max(map(len, [*found, *groups])) + 2
    lines = [f"usage: segsuite COMMAND [ARGS ...]    (segsuite {__version__}; COMMAND --help: the command's own help)",
             "", "commands (the Hydra ones take overrides: KEY=VALUE, GROUP=CHOICE, -m for sweeps):"]
    for name, summary in found.items():
        config = f"  [conf: {name}.yaml]" if conf.joinpath(f"{name}.yaml").is_file() else ""
        lines.append(f"  {name:<{width}}{summary}{config}")
    lines += ["", "config groups and their choices (e.g. model=fcn):"]
    lines += [f"  {group:<{width}}{', '.join(choices)}" for group, choices in groups.items()]
    return "\n".join([*lines, "", EXAMPLES])


def main(argv: Sequence[str] | None = None) -> None:
    """``segsuite COMMAND [ARGS ...]``: run the command; exits with its status (2 for a mistake on the command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        print(f"segsuite {__version__}")
        return
    known = commands()
    if args[0] not in known:
        print(f"error: unknown command {args[0]!r}; choose one of {', '.join(known)} (segsuite --help)",
              file=sys.stderr)
        sys.exit(2)
    run(args[0], args[1:])


def run(command: str, args: Sequence[str]) -> None:
    """Run segsuite.scripts.<command> as ``__main__`` with ``args``, as ``python scripts/<command>.py ARGS`` does.

    While it runs, ``__main__`` is that module (``sys.argv[0]`` its file), so the processes Lightning starts for
    DDP (``python -m segsuite.scripts.<command> ARGS``) run the same command.
    """
    one_heap()
    sys.argv = [f"segsuite {command}", *args]
    runpy.run_module(f"{SCRIPTS}.{command}", run_name="__main__", alter_sys=True)
