"""PNG encoding written for speed (label maps, colour images and overlays are written once per frame, beside the
forward pass): numpy's Sub filter and ISA-L's deflate (:func:`segsuite.core.gz.zlib_stream`; zlib's run-length
strategy without it). Pillow decodes what this writes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from segsuite.core.errors import DataError
from segsuite.core.gz import zlib_stream

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (grey, RGB)
PNG_LEVEL = 1  # deflate level: the fastest that still finds matches (ISA-L's level 0 left an overlay 60 % larger)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def encode_png(array: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """``(H, W)`` uint8/uint16 grey or ``(H, W, 3)`` uint8 RGB as PNG bytes, lossless (any decoder reads the same
    pixels back); with ``palette`` ``(N, 3)`` uint8 (N <= 256) the ``(H, W)`` uint8 ``array`` holds indices into it
    (an indexed-colour PNG: viewers show ``palette[array]``, a third of the bytes to filter and deflate).

    Every row gets PNG's Sub filter (each byte minus the same byte of the pixel on its left, in numpy) and the rows
    are deflated by ISA-L at level 1 (zlib's run-length strategy without it): a flat label map becomes runs of zeros,
    a photo's small horizontal differences a skewed byte histogram, which both compress about as well as with
    Pillow's adaptive filters and zlib level 1, at a tenth to a quarter of its time. Both deflaters release the GIL,
    so writer threads encode side by side."""
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    h, w = array.shape[:2]
    if array.dtype == np.uint16:
        array = array.astype(">u2")  # PNG stores 16-bit samples big-endian
    bpp = channels * array.dtype.itemsize  # bytes per pixel: the Sub filter's distance
    rows = np.ascontiguousarray(array).view(np.uint8).reshape(h, w * bpp)
    filtered = np.empty((h, w * bpp + 1), np.uint8)
    filtered[:, 0] = 1  # filter type Sub
    filtered[:, 1 : 1 + bpp] = rows[:, :bpp]
    np.subtract(rows[:, bpp:], rows[:, :-bpp], out=filtered[:, 1 + bpp :])  # modulo 256, as PNG defines it
    data = zlib_stream(filtered.data, PNG_LEVEL)
    kind = _PNG_COLOUR_TYPES[channels] if palette is None else 3  # 3: indexed colour
    header = struct.pack(">IIBBBBB", w, h, 8 * array.dtype.itemsize, kind, 0, 0, 0)
    plte = b"" if palette is None else _png_chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + plte + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def save_png(array: np.ndarray, path: str | Path, overwrite: bool = False, palette: np.ndarray | None = None
             ) -> Path:
    """Write ``array`` (``(H, W)`` uint8/uint16 or ``(H, W, 3)`` uint8; ``(H, W)`` uint8 indices into ``palette``
    ``(N, 3)``, N <= 256) as PNG (:func:`encode_png`)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"output {path} already exists (pass overwrite=True to replace it)")
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3) or \
            (array.ndim == 3 and (array.shape[2] != 3 or array.dtype != np.uint8)):
        raise ValueError(f"cannot write {array.dtype} array of shape {array.shape} as PNG to {path}")
    if palette is not None and (array.ndim != 2 or array.dtype != np.uint8 or
                                np.shape(palette)[1:] != (3,) or not 0 < len(palette) <= 256):
        raise ValueError(f"an indexed PNG takes (H, W) uint8 indices and a palette (N <= 256, 3); got {array.dtype} "
                         f"{array.shape} and {np.shape(palette)} for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_bytes(encode_png(array, palette))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path

