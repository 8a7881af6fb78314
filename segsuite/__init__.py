"""segsuite: image segmentation on one PyTorch Lightning core, with domain plug-ins.

One import root over the repository's folders: ``segsuite.core`` (core/), ``segsuite.domains`` (domains/),
``segsuite.scripts`` (scripts/: one module per command of ``segsuite``) and ``segsuite.conf`` (conf/: the Hydra
configs, ``pkg://segsuite.conf``). pyproject.toml maps them under ``segsuite`` when the package is installed.
"""

from pathlib import Path

__version__ = "0.1.0"

# In a clone those folders sit beside this one. Looking there too keeps a clone consistent with itself when it is on
# sys.path (PYTHONPATH, `python -m` from its root): segsuite.core is then its own core/, never another checkout's.
_CLONE = Path(__file__).resolve().parent.parent
if (_CLONE / "pyproject.toml").is_file() and (_CLONE / "core" / "__init__.py").is_file():
    __path__.append(str(_CLONE))
