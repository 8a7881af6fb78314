"""STAC inputs (``input=stac:items.json``, a local file or an http(s) URL): an ItemCollection, a single Item, or a
Catalog / Collection whose ``item`` and ``child`` links are followed. Each item's raster is the asset named by the
reader's ``stac_assets`` (one multi-band asset, or several single-band assets stacked in order, e.g. the red, green,
blue and nir of Sentinel-2); asset hrefs are resolved against the JSON they appear in.

The JSON is read with the standard library: a static catalogue is plain GeoJSON plus links, and pystac would be a
dependency for no more than that. Every failure (unreachable JSON, not STAC, an item without the asset) is a
DataError naming the file, item or asset.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from segsuite.core.errors import DataError
from segsuite.domains.landcover.io import is_remote

STAC_PREFIX = "stac:"


def _load(location: str) -> dict[str, Any]:
    """The JSON at ``location`` (a path or an http(s) URL); a DataError naming it when it cannot be read."""
    try:
        if is_remote(location):
            with urllib.request.urlopen(location, timeout=30) as response:  # noqa: S310 (http(s) checked by caller)
                return json.loads(response.read())
        return json.loads(Path(location).read_text())
    except (OSError, urllib.error.URLError) as exc:
        raise DataError(f"{location}: cannot read the STAC JSON: {getattr(exc, 'reason', exc)}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{location}: not JSON ({exc}); a STAC ItemCollection, Item or Catalog is expected") from None


def _resolve(href: str, base: str) -> str:
    """``href`` against the document at ``base`` (a URL or a local path)."""
    if is_remote(href) or Path(href).is_absolute():
        return href
    if is_remote(base):
        return urljoin(base, href)
    return str((Path(base).parent / href).resolve())


def _items(doc: dict[str, Any], base: str, seen: set[str]) -> Iterator[tuple[dict[str, Any], str]]:
    """``(item, the location its hrefs are relative to)`` of a STAC document, links followed once each."""
    kind = doc.get("type")
    if kind == "FeatureCollection":
        for item in doc.get("features", []):
            yield item, base
    elif kind == "Feature":
        yield doc, base
    elif kind in ("Catalog", "Collection"):
        for link in doc.get("links", []):
            if link.get("rel") in ("item", "child") and (href := _resolve(link["href"], base)) not in seen:
                seen.add(href)
                yield from _items(_load(href), href, seen)
    else:
        raise DataError(f"{base}: not a STAC ItemCollection, Item, Catalog or Collection (type {kind!r})")


def stac_rasters(location: str, assets: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(item id, the hrefs of its ``assets`` in order)`` for every item at ``location``; a DataError for no items,
    or an item lacking one of ``assets`` (naming the item and the assets it has)."""
    if not assets:
        raise DataError("stac_assets is empty; name the asset key(s) to read, e.g. [image] or [red,green,blue,nir]")
    found = []
    for item, base in _items(_load(location), location, {location}):
        have = item.get("assets", {})
        missing = [key for key in assets if key not in have]
        if missing:
            raise DataError(f"{location}: item {item.get('id')!r} has no asset {', '.join(map(repr, missing))} "
                            f"(it has: {', '.join(have) or 'none'}); set the reader's stac_assets")
        found.append((str(item.get("id")), [_resolve(have[key]["href"], base) for key in assets]))
    if not found:
        raise DataError(f"{location}: the STAC document holds no items")
    return found
