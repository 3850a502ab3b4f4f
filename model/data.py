"""Images as uint8 arrays, the train and eval preprocessing, and a fast batch loader.

Images live in a pre-resized uint8 cache: a NumPy array (often an ``np.memmap``) of shape
``(N, S, S, 3)``, RGB. Nothing decodes JPEGs per epoch and nothing turns the whole array into
floats: the loader reads one batch (sorted indices, so a memmap reads forwards), views it as an
NCHW tensor without copying (NHWC memory *is* PyTorch's channels_last layout), and the transform
turns that uint8 batch into a normalised float batch.

``eval_transform`` is the single definition of the preprocessing used by evaluation *and*
inference, so the two cannot drift apart. ``mean`` and ``std`` are per-channel, on the 0..1 scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Augment:
    """Training augmentation, each drawn independently per image.

    ``crop_padding`` pads by that many pixels (zeros) and crops back at a random offset;
    ``rotation`` is the largest angle in degrees; ``color_jitter`` the strength of brightness,
    contrast and saturation changes (0 = off; colour statistics can be a real cue for fakes).
    """

    hflip: bool = True
    crop_padding: int = 0
    rotation: float = 0.0
    color_jitter: float = 0.0

    @classmethod
    def preset(cls, name: str) -> Augment:
        """Presets: ``seed`` (flip, 10 degree rotation, jitter 0.2), ``crop``, ``flip``, ``none``"""
        presets = {
            "seed": cls(hflip=True, rotation=10.0, color_jitter=0.2),
            "crop": cls(hflip=True, crop_padding=4),
            "flip": cls(hflip=True),
            "none": cls(hflip=False),
        }
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}: {', '.join(presets)}")
        return presets[name]

    def to_dict(self) -> dict:
        """Plain values for checkpoints and JSON."""
        return asdict(self)


class EvalTransform:
    """uint8 NCHW batch -> resized, normalised float32 batch (memory format preserved)."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]):
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std positive")
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(1, 3, 1, 1)
        self._shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)])
        self._shift = self._shift.view(1, 3, 1, 1)

    def resize(self, batch: torch.Tensor) -> torch.Tensor:
        """Resize a uint8 batch to the network's input size when it differs."""
        if tuple(batch.shape[-2:]) != (self.image_size, self.image_size):
            batch = F.resize(batch, [self.image_size, self.image_size], antialias=True)
        return batch

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 -> float32 ``(x/255 - mean) / std`` in one pass."""
        return batch.float().mul_(self._scale).sub_(self._shift)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None):
        """Preprocess a uint8 NCHW batch for the network."""
        return self.normalise(self.resize(batch))


class TrainTransform(EvalTransform):
    """The eval preprocessing plus per-image random augmentation."""

    def __init__(self, image_size, mean, std, augment: Augment):
        super().__init__(image_size, mean, std)
        self.augment = augment

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None):
        """Augment then normalise; ``generator`` makes the random draws reproducible."""
        batch = self.resize(batch)
        if self.augment.crop_padding:
            batch = random_crop(batch, self.augment.crop_padding, generator)
        if self.augment.hflip:
            batch = random_hflip(batch, generator)
        if self.augment.rotation or self.augment.color_jitter:
            batch = self._per_image(batch, generator)
        return self.normalise(batch)

    def _per_image(self, batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Rotation and colour jitter, whose parameters differ per image (torchvision v2)."""
        count = batch.shape[0]
        angles = (torch.rand(count, generator=generator) * 2 - 1) * self.augment.rotation
        strength = self.augment.color_jitter
        factors = 1 + (torch.rand(count, 3, generator=generator) * 2 - 1) * strength
        out = torch.empty_like(batch)
        for index in range(count):
            image = batch[index]
            if self.augment.rotation:
                image = F.rotate(image, float(angles[index]), v2.InterpolationMode.BILINEAR)
            if strength:
                image = F.adjust_brightness(image, float(factors[index, 0]))
                image = F.adjust_contrast(image, float(factors[index, 1]))
                image = F.adjust_saturation(image, float(factors[index, 2]))
            out[index] = image
        return out


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> EvalTransform:
    """THE preprocessing for evaluation and inference: resize, scale to 0..1, normalise."""
    return EvalTransform(image_size, mean, std)


def train_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: Augment | str | dict = "seed",
) -> TrainTransform:
    """Training preprocessing: the eval preprocessing plus random augmentation (see ``Augment``)."""
    if isinstance(augment, str):
        augment = Augment.preset(augment)
    elif isinstance(augment, dict):
        augment = Augment(**augment)
    return TrainTransform(image_size, mean, std, augment)


def random_hflip(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)


def random_crop(
    batch: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop each image back to size at its own random offset."""
    count, _, height, width = batch.shape
    padded = torch.nn.functional.pad(batch, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, count), generator=generator)
    rows = (offsets[0].view(-1, 1) + torch.arange(height)).view(count, 1, height, 1)
    cols = (offsets[1].view(-1, 1) + torch.arange(width)).view(count, 1, 1, width)
    index = torch.arange(count).view(-1, 1, 1, 1)
    channels = torch.arange(batch.shape[1]).view(1, -1, 1, 1)
    cropped = padded[index, channels, rows, cols]
    return cropped.contiguous(memory_format=torch.channels_last)


def as_nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    """View uint8 (N, H, W, 3) images as an NCHW tensor (channels_last), copying only if needed."""
    array = np.ascontiguousarray(images_nhwc)
    if not array.flags.writeable:  # a slice of a read-only memmap: copy this one batch
        array = array.copy()
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, H, W, 3), got {array.dtype} {array.shape}"
        )
    return torch.from_numpy(array).permute(0, 3, 1, 2)


class BatchLoader:
    """Batches ``(float images, labels)`` from uint8 arrays: sorted reads, one transform per batch.

    Reading a memmap with one sorted fancy index per batch and transforming the whole batch at
    once is far faster than a ``Dataset.__getitem__`` per image plus ``DataLoader`` collation
    (see ``bench/model_bench.py``). With ``shuffle`` the order depends only on ``seed`` and the
    epoch (``set_epoch``), so runs are reproducible. ``labels`` may be None (inference).
    """

    def __init__(
        self, images, labels, batch_size, transform, shuffle=False, seed=0, drop_last=False
    ):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pick the shuffle order (and augmentation draws) of epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        count = len(self.images) / self.batch_size
        return int(count) if self.drop_last else math.ceil(count)

    def batches_of_indices(self) -> list[np.ndarray]:
        """The index arrays of this epoch's batches, each sorted for forward reads."""
        total = len(self.images)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(total)
            chunks = [order[i : i + self.batch_size] for i in range(0, total, self.batch_size)]
            chunks = [np.sort(chunk) for chunk in chunks]
        else:
            chunks = [
                np.arange(i, min(i + self.batch_size, total))
                for i in range(0, total, self.batch_size)
            ]
        if self.drop_last and chunks and len(chunks[-1]) < self.batch_size:
            chunks = chunks[:-1]
        return chunks

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for indices in self.batches_of_indices():
            yield self.load(indices, generator)

    def load(self, indices: np.ndarray, generator: torch.Generator | None = None):
        """One transformed batch and its labels (None without labels)."""
        if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
            raw = self.images[int(indices[0]) : int(indices[-1]) + 1]  # a slice reads faster
        else:
            raw = self.images[indices]
        batch = self.transform(as_nchw(raw), generator)
        labels = None if self.labels is None else torch.from_numpy(self.labels[indices])
        return batch, labels


class ArrayDataset(torch.utils.data.Dataset):
    """Per-image ``Dataset`` over uint8 arrays, for code that wants a ``DataLoader``.

    ``transform`` is applied to a batch of one. Prefer ``BatchLoader``: it is much faster.
    """

    def __init__(self, images, labels, transform):
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.transform(as_nchw(self.images[index : index + 1]))[0]
        label = -1 if self.labels is None else int(self.labels[index])
        return image, label


def channel_stats(images, batch: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, 3) images on the 0..1 scale, streamed.

    Sums are exact integers, so the result does not depend on ``batch``.
    """
    total = np.zeros(3, dtype=np.uint64)
    total_sq = np.zeros(3, dtype=np.uint64)
    count = 0
    for start in range(0, len(images), batch):
        chunk = np.asarray(images[start : start + batch]).reshape(-1, 3)
        total += chunk.sum(axis=0, dtype=np.uint64)
        total_sq += np.square(chunk, dtype=np.uint32).sum(axis=0, dtype=np.uint64)
        count += chunk.shape[0]
    if count == 0:
        raise ValueError("channel statistics need at least one image")
    mean = total.astype(np.float64) / (255.0 * count)
    mean_sq = total_sq.astype(np.float64) / (255.0**2 * count)
    std = np.sqrt(np.maximum(mean_sq - mean**2, 1e-12))
    return mean.tolist(), std.tolist()
