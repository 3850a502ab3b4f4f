"""Crops at native resolution: the input mode that keeps a large image's pixel-level traces.

Resizing a 1024x768 photograph to 224 px averages away the pixel-level traces a generator
leaves (upsampling patterns, demosaicing that is not there); a crop of 224 px taken at native
resolution, or after a fixed downscale of at most 2x, keeps them. A version is trained in one of
two input modes and always scored in the same one (``InputMode``, recorded in its checkpoint):

- ``resize``: the whole image resized to a square (the pixel cache; every version before this).
- ``crops``: training sees one random ``crop_size`` crop per image per epoch, from the image
  downscaled by ``downscale`` (1 = native); scoring takes a fixed ``grid`` x ``grid`` of crops
  spread evenly over the image and averages their logits (``pool_logits``).

Images are never enlarged: the downscale stops where the short side would fall below the crop,
and an image smaller than the crop is padded (centred, with a fixed fill colour) rather than
upsampled, because interpolation is itself the kind of trace the network should learn from
generators, not from the preprocessing.

Everything here is NumPy and Pillow: the views below index like the uint8 ``(N, S, S, 3)``
arrays ``model.data.BatchLoader`` reads, so training and ``Predictor`` reuse their loaders.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.images import to_rgb

INPUT_MODES = ("resize", "crops")
MAX_DOWNSCALE = 2.0
RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class InputMode:
    """How a version's network reads an image: ``resize`` or ``crops`` (see the module)."""

    mode: str = "resize"
    crop_size: int = 224
    downscale: float = 1.0
    grid: int = 3

    def __post_init__(self):
        if self.mode not in INPUT_MODES:
            raise ValueError(f"unknown input mode {self.mode!r}: use {' or '.join(INPUT_MODES)}")
        if not 1.0 <= float(self.downscale) <= MAX_DOWNSCALE:
            raise ValueError(f"downscale must be from 1 to {MAX_DOWNSCALE:g}, got {self.downscale}")
        if not 1 <= int(self.grid) <= 8:
            raise ValueError(f"the scoring grid must be 1 to 8 crops a side, got {self.grid}")

    @property
    def crops(self) -> bool:
        """True when the network reads crops rather than the resized image."""
        return self.mode == "crops"

    @property
    def crops_per_image(self) -> int:
        """How many crops scoring pools per image (1 in resize mode)."""
        return self.grid * self.grid if self.crops else 1

    def to_dict(self) -> dict:
        """Plain values for the checkpoint's ``input`` entry."""
        return asdict(self)

    def describe(self) -> str:
        """A short phrase for job logs and listings."""
        if not self.crops:
            return "resize"
        return (
            f"crops {self.crop_size} px at 1/{self.downscale:g} scale, "
            f"scored over {self.grid}x{self.grid} crops"
        )

    @classmethod
    def from_meta(cls, meta: dict) -> InputMode:
        """The input mode a checkpoint records; checkpoints from before it existed resize."""
        entry = meta.get("input") or {}
        if entry.get("mode", "resize") == "resize":
            return cls(crop_size=int(meta.get("image_size", 224)))
        return cls(
            mode="crops",
            crop_size=int(entry.get("crop_size", meta["image_size"])),
            downscale=float(entry.get("downscale", 1.0)),
            grid=int(entry.get("grid", 3)),
        )


def effective_downscale(width: int, height: int, mode: InputMode) -> float:
    """The downscale applied to a ``width`` x ``height`` image: ``mode.downscale``, less where
    that would bring the short side under the crop, and never below 1 (never enlarged)."""
    room = min(width, height) / mode.crop_size
    return max(1.0, min(float(mode.downscale), room))


def native_pixels(image: Image.Image, mode: InputMode) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of a decoded image at the scale the crops are taken from."""
    factor = effective_downscale(image.width, image.height, mode)
    if factor > 1.0:
        size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        if image.format == "JPEG" and factor >= 2.0:
            image.draft("RGB", size)  # the decoder's own 1/2 scaling: exact size follows
        image = to_rgb(image)
        if image.size != size:
            image = image.resize(size, RESAMPLE)
    return np.asarray(to_rgb(image), dtype=np.uint8)


def decode_native(source: bytes | str | Path, mode: InputMode) -> np.ndarray:
    """Decode an encoded image (bytes or a file path) into ``native_pixels``."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(stream) as image:
        return native_pixels(image, mode)


def pad_to_crop(image: np.ndarray, crop: int, fill: Sequence[int]) -> np.ndarray:
    """``image`` centred on a canvas at least ``crop`` a side, filled with ``fill``; the image
    itself as it is when both sides already reach ``crop`` (never resized, never enlarged)."""
    height, width = image.shape[:2]
    if height >= crop and width >= crop:
        return image
    canvas = np.empty((max(height, crop), max(width, crop), 3), dtype=np.uint8)
    canvas[...] = np.asarray(fill, dtype=np.uint8)
    top, left = (canvas.shape[0] - height) // 2, (canvas.shape[1] - width) // 2
    canvas[top : top + height, left : left + width] = image
    return canvas


def grid_offsets(length: int, crop: int, count: int) -> list[int]:
    """``count`` crop starts spread evenly from one edge to the other of a side of ``length``."""
    span = max(length - crop, 0)
    return [int(round(value)) for value in np.linspace(0, span, count)]


def grid_crops(image: np.ndarray, crop: int, grid: int, fill: Sequence[int]) -> np.ndarray:
    """The ``grid`` x ``grid`` crops of one image, row by row: uint8 (grid*grid, crop, crop, 3)."""
    image = pad_to_crop(image, crop, fill)
    rows = grid_offsets(image.shape[0], crop, grid)
    cols = grid_offsets(image.shape[1], crop, grid)
    return np.stack([image[r : r + crop, c : c + crop] for r in rows for c in cols])


def random_crop_of(image: np.ndarray, crop: int, rng: np.random.Generator, fill) -> np.ndarray:
    """One ``crop`` x ``crop`` crop of ``image`` at a uniformly random position."""
    image = pad_to_crop(image, crop, fill)
    top = int(rng.integers(0, image.shape[0] - crop + 1))
    left = int(rng.integers(0, image.shape[1] - crop + 1))
    return image[top : top + crop, left : left + crop]


def pool_logits(logits: np.ndarray, per_image: int) -> np.ndarray:
    """Mean over each image's ``per_image`` consecutive rows: (N*k, C) -> (N, C)."""
    logits = np.asarray(logits)
    return logits.reshape(-1, per_image, *logits.shape[1:]).mean(axis=1)


def fill_colour(mean: Sequence[float]) -> tuple[int, int, int]:
    """The padding colour: the training set's mean colour, which normalises to zero."""
    return tuple(int(round(255 * float(value))) for value in mean)


class NativeImages:
    """A sequence of images at native scale: arrays held in memory, or sources (encoded bytes or
    file paths) decoded on each access, so a training set of large photographs need not fit in
    memory (decoding a JPEG costs far less than a training step on it)."""

    def __init__(self, items: Sequence, mode: InputMode, decode: Callable | None = None):
        self.items, self.mode = items, mode
        self.decode = decode or decode_native

    @classmethod
    def of(cls, images, mode: InputMode) -> NativeImages:
        """``images`` as ``NativeImages``: as they are if they already are one; a uint8
        (N, H, W, 3) array or a list of (H, W, 3) arrays is taken row by row."""
        return images if isinstance(images, NativeImages) else cls(images, mode)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        """Image ``index`` as uint8 (H, W, 3); an array or list of indices gives the subset as
        ``NativeImages`` (as fancy indexing an array would)."""
        if not np.isscalar(index):
            return NativeImages([self.items[int(i)] for i in np.asarray(index)], self.mode)
        item = self.items[int(index)]
        if isinstance(item, bytes | str | Path):
            return self.decode(item, self.mode)
        array = np.asarray(item)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) image, got {array.dtype} {array.shape}")
        return array


class CropView:
    """Indexes like a uint8 (N, crop, crop, 3) array whose row ``i`` is a crop of image ``i``.

    ``BatchLoader`` reads it as it reads the pixel cache. ``kind`` is ``random`` (training: a
    random crop drawn from ``seed``, the epoch and the row alone, so it is fresh each epoch
    (``set_epoch``, which the loader calls) and the same whichever batch or process reads the
    row: distributed ranks see what one process would), ``centre`` (the middle crop: validation
    during training) or ``grid`` (row ``i * k + j`` is crop ``j`` of image ``i``'s ``grid``:
    pooled scoring).
    """

    def __init__(self, images: NativeImages, kind: str, fill, seed: int = 0):
        if kind not in ("random", "centre", "grid"):
            raise ValueError(f"unknown crop view {kind!r}")
        self.images, self.kind, self.fill = images, kind, tuple(fill)
        self.crop = images.mode.crop_size
        self.per_image = images.mode.crops_per_image if kind == "grid" else 1
        self.seed, self.epoch = int(seed), 0
        self._last: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw the random crops of epoch ``epoch``."""
        self.epoch = int(epoch)

    ndim = 4
    dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape of the array this view stands for."""
        return (len(self.images) * self.per_image, self.crop, self.crop, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """Row ``rows`` (an int: one crop), or the rows of a slice or an index array, stacked."""
        if np.isscalar(rows):
            return self._row(int(rows))
        if isinstance(rows, slice):
            rows = range(*rows.indices(len(self)))
        return np.stack([self._row(int(row)) for row in np.asarray(rows).reshape(-1)])

    def _row(self, row: int) -> np.ndarray:
        image = pad_to_crop(self._image(row // self.per_image), self.crop, self.fill)
        if self.kind == "random":
            rng = np.random.default_rng([self.seed, self.epoch, row])
            return random_crop_of(image, self.crop, rng, self.fill)
        grid = self.images.mode.grid if self.kind == "grid" else 1
        which = row % self.per_image
        if self.kind == "centre":  # one crop in the middle: a grid of one a side, centred
            top, left = (image.shape[0] - self.crop) // 2, (image.shape[1] - self.crop) // 2
        else:
            top = grid_offsets(image.shape[0], self.crop, grid)[which // grid]
            left = grid_offsets(image.shape[1], self.crop, grid)[which % grid]
        return image[top : top + self.crop, left : left + self.crop]

    def _image(self, index: int) -> np.ndarray:
        """Image ``index``, decoded once for the consecutive rows that crop it."""
        if self._last is None or self._last[0] != index:
            self._last = (index, self.images[index])
        return self._last[1]
