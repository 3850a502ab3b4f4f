"""Preprocessing, augmentation, the batch loader over (memmapped) uint8 arrays, channel stats."""

import numpy as np
import pytest
import torch

from model.data import (
    ArrayDataset,
    BatchLoader,
    as_nchw,
    crop_at,
    eval_transform,
    train_transform,
)
from model.stats import channel_stats
from tests.model.factories import make_images


def test_eval_transform_normalises_with_the_given_statistics():
    images = np.full((2, 8, 8, 3), 255, dtype=np.uint8)
    images[1] = 0
    out = eval_transform(8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))(as_nchw(images))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 8, 8)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
    assert torch.allclose(out[1, :, 0, 0], torch.tensor([-2.0, -1.0, -0.5]))


def test_eval_transform_resizes_to_the_input_size():
    images, _ = make_images(3, size=16)
    assert eval_transform(24, (0.5,) * 3, (0.5,) * 3)(as_nchw(images)).shape == (3, 3, 24, 24)


def test_flip_only_augmentation_gives_the_image_or_its_mirror():
    images, _ = make_images(16, size=8)
    transform = train_transform(8, (0.0,) * 3, (1 / 255,) * 3, augment="flip")
    out = transform(as_nchw(images), torch.Generator().manual_seed(0)).round().to(torch.uint8)
    original = as_nchw(images)
    same = (out == original).flatten(1).all(1)
    mirrored = (out == original.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert bool(mirrored.any()) and bool(same.any())


def test_crop_at_takes_windows_of_the_padded_image():
    images, _ = make_images(8, size=8)
    batch = as_nchw(images)
    offsets = torch.randint(0, 5, (8, 2), generator=torch.Generator().manual_seed(3))
    crops = crop_at(batch, 2, offsets)
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    for index in range(len(batch)):
        windows = {
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[index, :, dy : dy + 8, dx : dx + 8], crops[index])
        }
        row, col = (int(v) for v in offsets[index])
        assert (row, col) in windows, f"crop {index} is not the window at its offset"


def test_seed_augmentation_runs_and_is_reproducible():
    images, _ = make_images(4, size=16)
    transform = train_transform(16, (0.5,) * 3, (0.25,) * 3, augment="seed")
    first = transform(as_nchw(images), torch.Generator().manual_seed(7))
    second = transform(as_nchw(images), torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert not torch.equal(first, eval_transform(16, (0.5,) * 3, (0.25,) * 3)(as_nchw(images)))


def test_shuffled_loader_visits_every_image_once_per_epoch_reproducibly():
    images, labels = make_images(23, size=8)
    loader = BatchLoader(
        images, labels, 5, eval_transform(8, (0.5,) * 3, (0.5,) * 3), shuffle=True, seed=4
    )
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        orders.append(np.concatenate(loader.batches_of_indices()))
    assert sorted(orders[0].tolist()) == list(range(23))
    assert np.array_equal(orders[0], orders[2])
    assert not np.array_equal(orders[0], orders[1])
    assert len(list(loader)) == len(loader) == 5


def test_loader_reads_a_memmap_like_an_array(tmp_path):
    images, labels = make_images(10, size=8)
    mapped = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=images.shape
    )
    mapped[:] = images
    mapped.flush()
    transform = eval_transform(8, (0.5,) * 3, (0.5,) * 3)
    from_memmap = list(
        BatchLoader(np.load(tmp_path / "x.npy", mmap_mode="r"), labels, 4, transform, shuffle=True)
    )
    from_array = list(BatchLoader(images, labels, 4, transform, shuffle=True))
    for (a, la), (b, lb) in zip(from_memmap, from_array, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_array_dataset_matches_the_batch_loader():
    images, labels = make_images(6, size=8)
    transform = eval_transform(8, (0.5,) * 3, (0.5,) * 3)
    batch, batch_labels = next(iter(BatchLoader(images, labels, 6, transform)))
    item, label = ArrayDataset(images, labels, transform)[4]
    assert torch.equal(item, batch[4]) and label == int(batch_labels[4])


def test_channel_stats_match_numpy_whatever_the_batch():
    images, _ = make_images(20, size=8)
    expected_mean = images.reshape(-1, 3).mean(0) / 255
    expected_std = images.reshape(-1, 3).std(0) / 255
    for batch in (3, 1000):
        mean, std = channel_stats(images, batch=batch)
        assert np.allclose(mean, expected_mean) and np.allclose(std, expected_std)


def test_bad_arrays_are_rejected_clearly():
    with pytest.raises(ValueError, match="uint8 images"):
        as_nchw(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        BatchLoader(np.zeros((3, 8, 8, 3), np.uint8), [0, 1], 2, None)
    with pytest.raises(ValueError, match="at least one image"):
        channel_stats(np.zeros((0, 8, 8, 3), np.uint8))


def test_channel_stats_of_chosen_rows_are_those_images_stats_in_any_order():
    images, _ = make_images(12, size=8, seed=4)
    rows = [9, 2, 5, 11]
    expected = channel_stats(images[sorted(rows)])
    assert channel_stats(images, rows=rows) == expected
    assert channel_stats(images, batch=3, rows=sorted(rows)) == expected
    assert channel_stats(images, rows=rows) != channel_stats(images)
    with pytest.raises(ValueError, match="at least one image"):
        channel_stats(images, rows=[])


def test_channel_stats_on_a_known_array():
    # Red is 0 on half the pixels and 255 on the other half, green a constant 51, blue 255.
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[0, :, :, 0] = 255
    images[..., 1] = 51
    images[..., 2] = 255
    mean, std = channel_stats(images, batch=1)
    assert np.allclose(mean, [0.5, 0.2, 1.0])
    assert np.allclose(std, [0.5, 1e-6, 1e-6])  # a flat channel's std is floored, never 0
