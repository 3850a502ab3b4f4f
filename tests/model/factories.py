"""Tiny generated images for the model tests: REAL and FAKE differ in a way a CNN learns fast."""

from __future__ import annotations

import numpy as np


def make_images(count: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uint8 (size, size, 3) images, alternating labels 0 (real) and 1 (fake).

    Real images are smooth colour fields; fake ones are the same kind of field with bright
    vertical stripes in the red channel on every other column (an "artefact" to find).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    coarse = rng.integers(40, 200, size=(count, 4, 4, 3)).astype(np.float32)
    repeat = -(-size // 4)
    images = np.repeat(np.repeat(coarse, repeat, axis=1), repeat, axis=2)[:, :size, :size]
    images += rng.normal(0, 6, size=images.shape)
    images[labels == 1, :, ::2, 0] = 250
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


def separable_features(count: int = 200, dim: int = 16, seed: int = 0):
    """Two well-separated Gaussian clusters of features with labels 0/1 (for the light models)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    centres = np.zeros((2, dim), dtype=np.float32)
    centres[1, 0] = 6.0
    features = centres[labels] + rng.normal(0, 1, size=(count, dim)).astype(np.float32)
    return features.astype(np.float32), labels.astype(np.int64)
