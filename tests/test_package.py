"""The package as users get it: one import root (segsuite), the conf shipped inside, the ``segsuite`` command from
any folder after a plain (not editable) ``pip install``, and checkpoints of earlier versions still loading.

The installed tests build a fresh virtual environment that sees this interpreter's site-packages (torch and the
rest; a .pth only appends folders, so an editable install of the clone stays invisible), install a copy of the
package files into it with ``pip install --no-deps --no-build-isolation`` and run everything from an empty folder.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from segsuite.core.checkpoint import describe, load_task
from segsuite.core.train import check_resume
from segsuite.domains.toy.data import toy_sample
from tests.helpers import FAST_TRAIN, ROOT

OLD_ROOTS = ("core", "domains")  # the top-level packages of earlier versions
LEGACY_TARGET = "core.models.create_model"  # the network factory as checkpoints of earlier versions name it
MEANT = {"core/models/registry.py", "tests/test_package.py"}  # the files that name old paths on purpose


def old_path(value: str) -> bool:
    """Whether ``value`` is a dotted path into the old top-level packages (``core.io.write_json``)."""
    m = re.fullmatch(r"(core|domains)\.(\w+)[\w.:]*", value)
    return bool(m) and ((ROOT / m.group(1) / m.group(2)).is_dir() or (ROOT / m.group(1) / f"{m.group(2)}.py").is_file())


def test_nothing_imports_or_names_the_old_top_level_packages():
    found = []
    for folder in ("segsuite", "core", "domains", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and rel not in MEANT:
                    names = [node.value] if old_path(node.value) else []
                else:
                    continue
                found += [f"{rel}:{node.lineno}: {name}" for name in names if name.split(".")[0] in OLD_ROOTS]
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"_target_:\s*(core|domains)\.", line):
                found.append(f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}")
    assert not found, "core and domains are segsuite.core and segsuite.domains now:\n" + "\n".join(found)


def test_every_package_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    expected = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts:
                expected.add(".".join((package, *parts)))
    missing = sorted(expected - set(setuptools["packages"]))
    assert not missing, f"pip install would leave out {missing}: add them to [tool.setuptools] packages"


# ----------------------------------------------------------------------------------------------------------------
# Installed into a fresh environment


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=timeout)


def copy_package_files(target: Path) -> Path:
    """The clone's top-level files and Python packages (not tests/, not hidden or data folders)."""
    target.mkdir()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name == "tests":
            continue
        if entry.is_file():
            shutil.copy2(entry, target / entry.name)
        elif (entry / "__init__.py").is_file():
            shutil.copytree(entry, target / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(bin folder, empty working folder, environment) of a fresh venv with the package installed, not editable."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("installed")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    env.update(PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    purelib = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env)
    deps = [p for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    Path(purelib.stdout.strip(), "_segsuite_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    source = copy_package_files(tmp / "source")
    pip = [bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    proc = run([*pip, source], tmp, env)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    work = tmp / "work"
    work.mkdir()
    return bin_dir, work, env


@pytest.mark.slow
def test_help_lists_the_commands_and_the_config_groups(installed):
    bin_dir, work, env = installed
    proc = run([bin_dir / "segsuite", "--help"], work, env)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith("  ")]
    commands = {words[0] for words in lines if words}
    scripts = {p.stem for p in (ROOT / "scripts").glob("*.py") if not p.stem.startswith("_")} - {"demo"}
    assert scripts >= {"train", "predict", "evaluate", "benchmark"} and commands >= scripts
    for group in sorted((ROOT / "conf").iterdir()):
        choices = ", ".join(sorted(p.stem for p in group.glob("*.yaml"))) if group.is_dir() else ""
        assert not choices or [group.name, choices] in lines, f"{group.name}: {choices} not in\n{proc.stdout}"
    proc = run([bin_dir / "segsuite", "trian", "domain=toy"], work, env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown command 'trian'; choose one of train,")


@pytest.mark.slow
def test_only_segsuite_is_importable_and_it_is_the_installed_copy(installed):
    bin_dir, work, env = installed
    for name in OLD_ROOTS:
        proc = run([bin_dir / "python", "-c", f"import {name}"], work, env)
        assert proc.returncode == 1 and f"No module named '{name}'" in proc.stderr, proc.stderr
    modules = ("segsuite", "segsuite.core", "segsuite.domains", "segsuite.scripts", "segsuite.conf")
    proc = run([bin_dir / "python", "-c", f"import {', '.join(modules)}\n"
                + "".join(f"print({m}.__file__)\n" for m in modules)], work, env)
    assert proc.returncode == 0, proc.stderr
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in proc.stdout.split()), proc.stdout


IMPORT_EVERY_MODULE = """
import importlib, pathlib, segsuite
root = pathlib.Path(segsuite.__file__).parent
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in ("segsuite", "core", "domains"):
            print(f"{name}: {err}")
    except Exception:
        pass  # the module's own error (its tests say so): this test is about what the package ships
"""


@pytest.mark.slow
def test_no_module_of_ours_is_missing_when_installed(installed):
    """Every module of the installed package finds the modules of ours it imports: none was left out of the
    package list, none still imports an old top-level name. (A missing third-party optional module is fine.)"""
    bin_dir, work, env = installed
    proc = run([bin_dir / "python", "-c", IMPORT_EVERY_MODULE], work, env)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr[-3000:]


@pytest.mark.slow
def test_train_predict_evaluate_from_an_empty_folder(installed, tmp_path):
    bin_dir, work, env = installed
    segsuite = bin_dir / "segsuite"
    data = [o for o in FAST_TRAIN if o.startswith("domain.")]
    proc = run([segsuite, "train", "domain=toy", f"hydra.run.dir={tmp_path / 'train'}", *FAST_TRAIN], work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = tmp_path / "train" / "checkpoints" / "last.ckpt"
    assert describe(last)["model"]["_target_"] == "segsuite.core.models.create_model"

    # A checkpoint of an earlier version (the factory named core.models.create_model) loads, resumes and predicts.
    old = tmp_path / "old.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["model"]["_target_"] = LEGACY_TARGET
    torch.save(ckpt, old)
    assert describe(old)["model"]["_target_"] == "segsuite.core.models.create_model"
    assert load_task(old)(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    check_resume(str(old), describe(last)["model"])  # same network: no error

    # predict and evaluate side by side, one CPU thread each (most of each is its imports, on one core)
    np.save(tmp_path / "image.npy", toy_sample(0, 40, 3, 3, 255)[0])
    one_thread = {**env, "OMP_NUM_THREADS": "1"}
    with ThreadPoolExecutor(2) as pool:
        predict = pool.submit(run, [segsuite, "predict", "domain=toy", f"checkpoint={old}",
                                    f"input={tmp_path / 'image.npy'}", f"output={tmp_path / 'pred.npy'}",
                                    f"hydra.run.dir={tmp_path / 'predict'}"], work, one_thread)
        evaluate = pool.submit(run, [segsuite, "evaluate", "domain=toy", f"checkpoint={last}",
                                     f"output_dir={tmp_path / 'eval'}", f"hydra.run.dir={tmp_path / 'evaluate'}",
                                     *data], work, one_thread)
    for proc in (predict.result(), evaluate.result()):
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.load(tmp_path / "pred.npy").shape == (40, 40)
    assert (tmp_path / "eval" / "metrics.json").is_file()
