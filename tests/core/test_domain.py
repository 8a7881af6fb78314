"""The core knows no domain: it imports no domain library, and a domain's required surface is small."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import segsuite.core
from segsuite.core import domain

DOMAIN_LIBRARIES = {"rasterio", "nibabel", "SimpleITK", "pydicom", "tifffile", "fiona", "shapely"}


def test_the_core_imports_no_domain_library():
    found = []
    for path in Path(segsuite.core.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in DOMAIN_LIBRARIES]
    assert found == []


def test_a_domain_writes_at_most_ten_members():
    required = [f"{cls.__name__}.{name}" for cls in (domain.BaseReader, domain.BaseWriter, domain.BaseSink,
                                                     domain.BaseEvaluation)
                for name in sorted(cls.__abstractmethods__)]
    assert len(required) + 1 <= 10, required  # + BaseOpened.sources
    assert "sources" in inspect.get_annotations(domain.BaseOpened)


def test_no_module_of_the_core_or_a_domain_is_over_400_lines():
    import segsuite.domains

    roots = [Path(segsuite.core.__file__).parent, Path(segsuite.domains.__file__).parent]
    long = {str(p): n for root in roots for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_domains_stay_small():
    """Issue 20's budget: a new domain is cheap (microscopy <= 600 lines) and the domains together <= 8,000."""
    import segsuite.domains

    root = Path(segsuite.domains.__file__).parent
    lines = {p: len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert sum(n for p, n in lines.items() if "microscopy" in p.parts) <= 600
    assert sum(lines.values()) <= 8000, sum(lines.values())
