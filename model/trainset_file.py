"""A training set on disk, for training in other processes or on other machines.

A folder holding plain NumPy files, so every process can memory-map the pixels instead of
holding its own copy, and the folder can be copied to other machines as it is:

- ``train_images.npy``, ``val_images.npy``: uint8 (N, S, S, 3) RGB pixels; or, for a run on
  crops (``input_mode`` ``crops``: images of any sizes at the scale the crops are taken from),
  ``train_native.u8`` / ``val_native.u8``, the images' pixels one after another (row-major
  uint8 RGB), with ``train_shapes.npy`` / ``val_shapes.npy``, each image's (height, width);
- ``train_labels.npy``, ``val_labels.npy``: int64 class indices (0 real, 1 fake);
- ``trainset.json``: the normalisation (mean, std), the ``TrainConfig``, the fingerprint of the
  (image, label) pairs and any further checkpoint metadata, so the run that reads the folder
  writes the checkpoint single-process training would have written.

Whoever writes the folder may add files (the web app adds the image ids); readers ignore them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.config import TrainConfig

FORMAT_VERSION = 1
INFO_FILE = "trainset.json"
SPLITS = ("train", "val")


class TrainsetError(ValueError):
    """The folder is missing, incomplete or inconsistent; the message says what is wrong."""


@dataclass
class Trainset:
    """A training set read back from a folder (pixels memory-mapped, read-only): a uint8
    (N, S, S, 3) array per split, or for crops a list of (H, W, 3) arrays of any sizes."""

    train_images: np.ndarray | list[np.ndarray]
    train_labels: np.ndarray
    val_images: np.ndarray | list[np.ndarray]
    val_labels: np.ndarray
    mean: list[float]
    std: list[float]
    config: TrainConfig
    train_set_sha256: str = ""
    meta: dict = field(default_factory=dict)


def images_for_writing(folder, split: str, count: int, size: int) -> np.ndarray:
    """A writable (count, size, size, 3) uint8 ``.npy`` memory map for ``split``'s pixels."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use train or val")
    path = Path(folder) / f"{split}_images.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (int(count), int(size), int(size), 3)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


class NativeImagesWriter:
    """Writes ``split``'s images of any sizes, one after another (``add``), for a run on crops;
    ``close`` (or leaving the ``with`` block) writes their shapes."""

    def __init__(self, folder, split: str):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use train or val")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.shapes_path = folder / f"{split}_shapes.npy"
        self.file = (folder / f"{split}_native.u8").open("wb")
        self.shapes: list[tuple[int, int]] = []

    def add(self, image: np.ndarray) -> None:
        """Append one uint8 (H, W, 3) image."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        self.file.write(np.ascontiguousarray(image).tobytes())
        self.shapes.append((int(image.shape[0]), int(image.shape[1])))

    def close(self) -> None:
        self.file.close()
        np.save(self.shapes_path, np.asarray(self.shapes, dtype=np.int64).reshape(-1, 2))

    def __enter__(self) -> NativeImagesWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_trainset_info(
    folder,
    train_labels,
    val_labels,
    config: TrainConfig,
    mean,
    std,
    train_set_sha256: str = "",
    meta: dict | None = None,
) -> Path:
    """Write the labels and ``trainset.json`` (after the pixels); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, labels in zip(SPLITS, (train_labels, val_labels), strict=True):
        np.save(folder / f"{split}_labels.npy", np.asarray(labels, dtype=np.int64))
    info = {
        "format": FORMAT_VERSION,
        "mean": [float(value) for value in mean],
        "std": [float(value) for value in std],
        "config": config.to_dict(),
        "train_set_sha256": train_set_sha256,
        "meta": meta or {},
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    return folder


def load_trainset(folder) -> Trainset:
    """Read a folder written by ``images_for_writing`` and ``save_trainset_info``."""
    folder = Path(folder)
    info = _read_info(folder)
    try:
        config = TrainConfig.from_dict(info["config"])
    except (TypeError, ValueError) as error:
        raise TrainsetError(f"{folder}/{INFO_FILE}: bad training configuration: {error}") from error
    arrays = {}
    for split in SPLITS:
        if config.input_mode == "crops":
            images = _load_native(folder, split)
        else:
            images = _load_array(folder / f"{split}_images.npy", mmap=True)
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise TrainsetError(
                    f"{folder}/{split}_images.npy holds {images.dtype} {images.shape}, "
                    "expected uint8 (N, S, S, 3)"
                )
        labels = _load_array(folder / f"{split}_labels.npy", mmap=False)
        if len(labels) != len(images):
            raise TrainsetError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
        arrays[split] = (images, labels.astype(np.int64))
    return Trainset(
        *arrays["train"],
        *arrays["val"],
        mean=list(info["mean"]),
        std=list(info["std"]),
        config=config,
        train_set_sha256=info.get("train_set_sha256", ""),
        meta=dict(info.get("meta") or {}),
    )


def _read_info(folder: Path) -> dict:
    path = folder / INFO_FILE
    if not path.is_file():
        raise TrainsetError(f"{folder} is not an exported training set (no {INFO_FILE})")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TrainsetError(f"cannot read {path}: {error}") from error
    if not isinstance(info, dict) or info.get("format", 0) > FORMAT_VERSION:
        raise TrainsetError(f"{path} is not a training set this version can read")
    missing = [key for key in ("mean", "std", "config") if key not in info]
    if missing:
        raise TrainsetError(f"{path} lacks {', '.join(missing)}")
    return info


def _load_native(folder: Path, split: str) -> list[np.ndarray]:
    """A run on crops: ``split``'s images as (H, W, 3) views of the memory-mapped pixels."""
    shapes = _load_array(folder / f"{split}_shapes.npy", mmap=False)
    path = folder / f"{split}_native.u8"
    if shapes.ndim != 2 or shapes.shape[1] != 2 or (shapes < 1).any():
        raise TrainsetError(f"{folder}/{split}_shapes.npy holds no (height, width) pairs")
    sizes = shapes[:, 0] * shapes[:, 1] * 3
    length = path.stat().st_size if path.is_file() else None
    if length != int(sizes.sum()):
        found = "is missing" if length is None else f"holds {length} bytes"
        raise TrainsetError(
            f"{path} {found}: its {len(shapes)} images' shapes need {int(sizes.sum())}"
        )
    if not len(shapes):
        return []
    pixels = np.memmap(path, dtype=np.uint8, mode="r")
    ends = np.cumsum(sizes)
    return [
        pixels[end - size : end].reshape(int(height), int(width), 3)
        for (height, width), size, end in zip(shapes, sizes, ends, strict=True)
    ]


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise TrainsetError(f"{path} is missing")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise TrainsetError(f"cannot read {path}: {error}") from error
