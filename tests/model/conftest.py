"""Fixtures for the model tests: one tiny trained network shared by the whole session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import TrainConfig
from model.stats import channel_stats
from model.train import train
from tests.model.factories import make_images


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core box two OpenMP threads spin against each other and
    make these small networks several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(**overrides) -> TrainConfig:
    """A configuration that trains in a second or two on 32 px images."""
    values = {
        "epochs": 1,
        "image_size": 32,
        "batch_size": 16,
        "lr": 3e-3,
        "augment": "flip",
        "init": "random",
        "stem": "imagenet",
        "device": "cpu",
        "precision": "fp32",
    }
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def tiny_data():
    """48 training and 16 validation images with their labels and channel statistics."""
    train_images, train_labels = make_images(48, seed=1)
    val_images, val_labels = make_images(16, seed=2)
    mean, std = channel_stats(train_images)
    return train_images, train_labels, val_images, val_labels, mean, std


@pytest.fixture(scope="session")
def tiny_run(tiny_data):
    """A network trained for three epochs on the tiny data (shared, do not modify)."""
    train_images, train_labels, val_images, val_labels, mean, std = tiny_data
    return train(
        train_images, train_labels, val_images, val_labels, tiny_config(epochs=3), mean, std
    )


@pytest.fixture(scope="session")
def flipped_tiny(tiny_data):
    """All 64 tiny images as one set, their true labels, the given labels with three flipped,
    and which three."""
    images = np.concatenate([tiny_data[0], tiny_data[2]])
    truth = np.concatenate([tiny_data[1], tiny_data[3]])
    flipped = np.array([3, 17, 40])
    given = truth.copy()
    given[flipped] = 1 - given[flipped]
    return images, truth, given, flipped
