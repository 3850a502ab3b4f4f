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

from model.perturb import degrade_batch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Augment:
    """Training augmentation, each drawn independently per image.

    ``crop_padding`` pads by that many pixels (zeros) and crops back at a random offset;
    ``rotation`` is the largest angle in degrees; ``color_jitter`` the strength of brightness,
    contrast and saturation changes (0 = off; colour statistics can be a real cue for fakes).
    ``rescale_p`` shrinks that share of images by a factor in [``rescale_min``, 1] and back;
    ``jpeg_p`` re-encodes that share as JPEG at a quality in [``jpeg_quality_min``, 95]
    (``model.perturb``: traces that survive re-compression and downsizing).
    """

    hflip: bool = True
    crop_padding: int = 0
    rotation: float = 0.0
    color_jitter: float = 0.0
    rescale_p: float = 0.0
    rescale_min: float = 0.5
    jpeg_p: float = 0.0
    jpeg_quality_min: int = 50

    @classmethod
    def preset(cls, name: str) -> Augment:
        """Presets: ``seed`` (flip, 10 degree rotation, jitter 0.2), ``crop``, ``flip``,
        ``flip-degrade`` (flips, and a third each rescaled and JPEG re-encoded), ``none``"""
        presets = {
            "seed": cls(hflip=True, rotation=10.0, color_jitter=0.2),
            "crop": cls(hflip=True, crop_padding=4),
            "flip": cls(hflip=True),
            "flip-degrade": cls(hflip=True, rescale_p=0.3, jpeg_p=0.3),
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

    def draw(self, count: int, generator: torch.Generator | None = None) -> dict:
        """The random parameters for ``count`` images: none, evaluation is not random."""
        return {}

    def apply(self, batch: torch.Tensor, params: dict) -> torch.Tensor:
        """Preprocess a uint8 NCHW batch with parameters from ``draw``."""
        return self.normalise(self.resize(batch))

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None):
        """Preprocess a uint8 NCHW batch for the network."""
        return self.apply(batch, self.draw(batch.shape[0], generator))


class TrainTransform(EvalTransform):
    """The eval preprocessing plus per-image random augmentation."""

    def __init__(self, image_size, mean, std, augment: Augment):
        super().__init__(image_size, mean, std)
        self.augment = augment

    def draw(self, count: int, generator: torch.Generator | None = None) -> dict:
        """Every random draw for ``count`` images, per image (row ``i`` belongs to image ``i``).

        Drawing apart from applying lets distributed training draw for the whole global batch
        and apply to its own rows only, so each image is augmented exactly as it would be in a
        single process. The order of the draws is fixed: it decides the seeded results.
        """
        params = {}
        if self.augment.crop_padding:
            span = 2 * self.augment.crop_padding + 1
            params["crop"] = torch.randint(0, span, (2, count), generator=generator).t()
        if self.augment.hflip:
            params["flip"] = torch.rand(count, generator=generator) < 0.5
        if self.augment.rotation or self.augment.color_jitter:
            params["angle"] = (
                torch.rand(count, generator=generator) * 2 - 1
            ) * self.augment.rotation
            jitter = torch.rand(count, 3, generator=generator) * 2 - 1
            params["jitter"] = 1 + jitter * self.augment.color_jitter
        params.update(self._draw_degradation(count, generator))
        return params

    def _draw_degradation(self, count: int, generator) -> dict:
        """Draws for ``perturb.degrade_batch``, after the others (so adding it changed no
        seeded run without it)."""
        params, augment = {}, self.augment
        if augment.rescale_p:
            params["rescale"] = torch.rand(count, generator=generator) < augment.rescale_p
            low = augment.rescale_min
            params["scale"] = low + (1 - low) * torch.rand(count, generator=generator)
        if augment.jpeg_p:
            params["jpeg"] = torch.rand(count, generator=generator) < augment.jpeg_p
            span = (augment.jpeg_quality_min, 96)
            params["quality"] = torch.randint(*span, (count,), generator=generator)
        return params

    def apply(self, batch: torch.Tensor, params: dict) -> torch.Tensor:
        """Augment with parameters from ``draw`` (a row per image of ``batch``), then normalise."""
        batch = self.resize(batch)
        if "rescale" in params or "jpeg" in params:
            batch = degrade_batch(batch, params)
        if "crop" in params:
            batch = crop_at(batch, self.augment.crop_padding, params["crop"])
        if "flip" in params:
            batch = flip_where(batch, params["flip"])
        if "angle" in params:
            batch = self._per_image(batch, params["angle"], params["jitter"])
        return self.normalise(batch)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None):
        """Augment then normalise; ``generator`` makes the random draws reproducible."""
        return self.apply(batch, self.draw(batch.shape[0], generator))

    def _per_image(self, batch: torch.Tensor, angles, factors) -> torch.Tensor:
        """Rotation and colour jitter, whose parameters differ per image (torchvision v2)."""
        out = torch.empty_like(batch)
        for index in range(batch.shape[0]):
            image = batch[index]
            if self.augment.rotation:
                image = F.rotate(image, float(angles[index]), v2.InterpolationMode.BILINEAR)
            if self.augment.color_jitter:
                image = F.adjust_brightness(image, float(factors[index, 0]))
                image = F.adjust_contrast(image, float(factors[index, 1]))
                image = F.adjust_saturation(image, float(factors[index, 2]))
            out[index] = image
        return out


def select_rows(params: dict, rows) -> dict:
    """The augmentation parameters of some images of a batch (rows of every drawn tensor)."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    return {name: value[rows] for name, value in params.items()}


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


def flip_where(batch: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry in the boolean ``flip`` is set."""
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)


def crop_at(batch: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop image ``i`` back to size at ``offsets[i]`` (row, col)."""
    count, _, height, width = batch.shape
    padded = torch.nn.functional.pad(batch, (padding, padding, padding, padding))
    rows = (offsets[:, 0].view(-1, 1) + torch.arange(height)).view(count, 1, height, 1)
    cols = (offsets[:, 1].view(-1, 1) + torch.arange(width)).view(count, 1, 1, width)
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

    ``shard=(rank, shards)`` is for distributed training: every process walks the same global
    batches of ``batch_size`` images and takes its own ``batch_size / shards`` of each (see
    ``shard_rows``); the augmentation is drawn for the whole global batch (the transform needs
    ``draw`` and ``apply``), so together the processes see exactly what one process would.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size,
        transform,
        shuffle=False,
        seed=0,
        drop_last=False,
        shard=(0, 1),
    ):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        rank, shards = shard
        if not 0 <= rank < shards:
            raise ValueError(f"shard {rank} of {shards} does not exist")
        if shards > 1 and (batch_size % shards or len(images) < shards):
            raise ValueError(
                f"a batch of {batch_size} from {len(images)} images cannot be split evenly "
                f"over {shards} processes: the batch size must be a multiple of the process "
                "count and there must be at least one image per process"
            )
        self.shard = (int(rank), int(shards))
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pick the shuffle order (and augmentation draws) of epoch ``epoch``; images that draw
        per epoch themselves (``model.crops.CropView``) are told too."""
        self.epoch = epoch
        if hasattr(self.images, "set_epoch"):
            self.images.set_epoch(epoch)

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
        sharded = self.shard[1] > 1
        for indices in self.batches_of_indices():
            yield self.load_shard(indices, generator) if sharded else self.load(indices, generator)

    def load(self, indices: np.ndarray, generator: torch.Generator | None = None):
        """One transformed batch and its labels (None without labels)."""
        batch = self.transform(as_nchw(self._read(indices)), generator)
        return batch, self._labels_of(indices)

    def shard_rows(self, count: int) -> np.ndarray:
        """The rows of a global batch of ``count`` images that this process takes.

        Strided from the process's rank, as ``DistributedSampler`` strides; a last short batch
        is cut to a multiple of the process count (dropping fewer images than there are
        processes) so that every process takes the same number of steps and images.
        """
        rank, shards = self.shard
        return np.arange(rank, count - count % shards, shards)

    def load_shard(self, indices: np.ndarray, generator: torch.Generator | None = None):
        """This process's part of the global batch ``indices``, augmented as in one process."""
        params = self.transform.draw(len(indices), generator)
        rows = self.shard_rows(len(indices))
        own = indices[rows]
        batch = self.transform.apply(as_nchw(self._read(own)), select_rows(params, rows))
        return batch, self._labels_of(own)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
            return self.images[int(indices[0]) : int(indices[-1]) + 1]  # a slice reads faster
        return self.images[indices]

    def _labels_of(self, indices: np.ndarray) -> torch.Tensor | None:
        return None if self.labels is None else torch.from_numpy(self.labels[indices])


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
