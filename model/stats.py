"""Normalisation statistics of uint8 images, in NumPy alone (no PyTorch), so the web app and the
data audit compute them without loading a network library.
"""

from __future__ import annotations

import numpy as np


def channel_stats(images, batch: int = 256, rows=None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, 3) images on the 0..1 scale, streamed.

    The one normalisation statistic: training, the desk's data audit and the benches all use it.
    ``rows`` (indices into ``images``) restricts it to those images, read ``batch`` at a time,
    so a memory map of the whole pixel cache is never copied. Sums are exact integers, so the
    result does not depend on ``batch`` or on the order of ``rows``.
    """
    positions = None if rows is None else np.asarray(rows, dtype=np.int64)
    length = len(images) if positions is None else len(positions)
    total = np.zeros(3, dtype=np.uint64)
    total_sq = np.zeros(3, dtype=np.uint64)
    count = 0
    for start in range(0, length, batch):
        if positions is None:
            block = images[start : start + batch]
        else:
            block = images[positions[start : start + batch]]
        chunk = np.asarray(block).reshape(-1, 3)
        total += chunk.sum(axis=0, dtype=np.uint64)
        total_sq += np.square(chunk, dtype=np.uint32).sum(axis=0, dtype=np.uint64)
        count += chunk.shape[0]
    if count == 0:
        raise ValueError("channel statistics need at least one image")
    mean = total.astype(np.float64) / (255.0 * count)
    mean_sq = total_sq.astype(np.float64) / (255.0**2 * count)
    std = np.sqrt(np.maximum(mean_sq - mean**2, 1e-12))
    return mean.tolist(), std.tolist()
