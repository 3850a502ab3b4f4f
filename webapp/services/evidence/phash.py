"""A DCT perceptual hash (pHash) in numpy, and the 16-bit bands that index it.

The picture is reduced to 32x32 grey, transformed with a 2-D DCT, and the 8x8 lowest frequencies
(without the constant term's influence on the threshold) are compared with their median: 64 bits
that survive re-encoding, resizing and small crops, and differ in about half their bits between
unrelated pictures. Written here rather than taken from ImageHash so that import workers load no
SciPy.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image as PILImage

SIDE = 32
LOW = 8
BANDS = 4
BAND_BITS = 16


@cache
def _dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``M @ x`` transforms the columns of ``x``."""
    n = np.arange(size)
    matrix = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size))
    matrix[0] *= 1 / np.sqrt(2)
    return matrix * np.sqrt(2 / size)


def perceptual_hash(image: PILImage.Image) -> int:
    """The 64-bit pHash of ``image`` as an unsigned integer."""
    grey = image.convert("L").resize((SIDE, SIDE), PILImage.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    matrix = _dct_matrix(SIDE)
    low = (matrix @ pixels @ matrix.T)[:LOW, :LOW].ravel()
    bits = low > np.median(low[1:])
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(first: int, second: int) -> int:
    """How many of the 64 bits differ."""
    return ((first ^ second) & 0xFFFFFFFFFFFFFFFF).bit_count()


def bands(value: int) -> list[int]:
    """The four 16-bit bands, most significant first: two hashes within Hamming distance 3
    share at least one band exactly (pigeonhole), within 7 one band within distance 1."""
    return [(value >> (BAND_BITS * (BANDS - 1 - i))) & 0xFFFF for i in range(BANDS)]


def neighbours(band: int) -> list[int]:
    """``band`` and the 16 values one bit away from it."""
    return [band] + [band ^ (1 << bit) for bit in range(BAND_BITS)]


def to_signed(value: int) -> int:
    """The hash as a signed 64-bit integer, the form a BIGINT column stores."""
    return value - (1 << 64) if value >= 1 << 63 else value


def from_signed(value: int) -> int:
    """The unsigned hash back from its stored signed form."""
    return value + (1 << 64) if value < 0 else value


def to_hex(value: int) -> str:
    """16 hex digits, as ImageHash and most tools print a 64-bit hash."""
    return f"{value:016x}"
