"""Estimate the quality setting a JPEG was saved with, from its quantisation tables.

Most encoders (libjpeg and everything built on it: Pillow, OpenCV, browsers, many cameras) scale
the two example tables of the JPEG standard (Annex K) by the IJG quality formula. Inverting that
formula tells us the quality a file was written at: a shortcut a detector can learn when the real
and the fake images of a dataset were compressed differently. For encoders with their own tables
the nearest IJG quality is returned, which is still a good ordinal measure of compression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache, lru_cache

import numpy as np

# JPEG standard Annex K tables, natural (row-major) order, as Pillow reports them.
LUMINANCE_BASE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
).ravel()
CHROMINANCE_BASE = np.full((8, 8), 99, dtype=np.int64)
CHROMINANCE_BASE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
CHROMINANCE_BASE = CHROMINANCE_BASE.ravel()


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """The table libjpeg writes for ``quality`` (1-100), baseline-clamped to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


@cache
def _candidates() -> tuple[np.ndarray, np.ndarray]:
    qualities = range(1, 101)
    luminance = np.stack([ijg_table(LUMINANCE_BASE, q) for q in qualities])
    chrominance = np.stack([ijg_table(CHROMINANCE_BASE, q) for q in qualities])
    return luminance, chrominance


def estimate_quality(tables: Mapping[int, Sequence[int]] | None) -> int | None:
    """The IJG quality (1-100) whose tables are closest to ``tables`` (Pillow's
    ``image.quantization``); ``None`` when there are no usable tables."""
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    chrominance = tables.get(1)
    if chrominance is not None and len(chrominance) != 64:
        chrominance = None
    # A dataset's files usually share an encoder and a setting: remember the answers.
    return _nearest(tuple(tables[0]), tuple(chrominance) if chrominance else None)


@lru_cache(maxsize=256)
def _nearest(luminance_table: tuple, chrominance_table: tuple | None) -> int:
    luminance, chrominance = _candidates()
    observed = np.asarray(luminance_table, dtype=np.int64)
    error = np.abs(luminance - observed).sum(axis=1)
    if chrominance_table is not None:
        observed = np.asarray(chrominance_table, dtype=np.int64)
        error = error + np.abs(chrominance - observed).sum(axis=1)
    return int(np.argmin(error)) + 1
