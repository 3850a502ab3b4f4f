"""The pre-resized uint8 pixel cache the model reads instead of decoding originals.

One pair of files per square size under ``instance/cache/``:

- ``pixels-<size>.u8``: row ``image.id`` holds ``size * size * 3`` RGB bytes;
- ``pixels-<size>.tag``: row ``image.id`` holds the first 8 bytes of the image's SHA-256.

A row counts only when its tag matches the image's hash in the database. Writers write the pixels
first and the tag second, with ``pwrite`` at fixed offsets, so concurrent importers never touch
each other's rows, and a row left half-written by a killed import (or written for an image id that
a rolled-back transaction later hands to another image) simply fails the check and is rebuilt from
the stored original. Nothing needs a lock or a repair step.

:func:`model.images.resize_for_model` is the one preprocessing from decoded image to square uint8
pixels; the cache is built with it (and :func:`model.images.load_for_model` gives a file's row).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

TAG_BYTES = 8


def tag_of(sha256: str) -> bytes:
    """The row tag of an image: the first 8 bytes of its SHA-256."""
    return bytes.fromhex(sha256[: 2 * TAG_BYTES])


def cache_dir_under(root: Path | str) -> Path:
    """The cache folder under the instance folder ``root``."""
    return Path(root) / "cache"


class PixelCache:
    """The cache files of one size; safe to use from several processes at once."""

    def __init__(self, root: Path | str, size: int) -> None:
        self.size = size
        self.row_bytes = size * size * 3
        folder = cache_dir_under(root)
        self.pixels_file = folder / f"pixels-{size}.u8"
        self.tags_file = folder / f"pixels-{size}.tag"

    def write(self, ids: Sequence[int], sha256s: Sequence[str], pixels: Iterable) -> None:
        """Store rows: all pixels first, then their tags, so a torn batch stays invalid."""
        self.pixels_file.parent.mkdir(parents=True, exist_ok=True)
        pixel_fd = os.open(self.pixels_file, os.O_RDWR | os.O_CREAT, 0o644)
        tag_fd = os.open(self.tags_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for image_id, row in zip(ids, pixels, strict=True):
                data = np.ascontiguousarray(row, dtype=np.uint8).data
                if data.nbytes != self.row_bytes:
                    raise ValueError(f"row of {data.nbytes} bytes, expected {self.row_bytes}")
                os.pwrite(pixel_fd, data, image_id * self.row_bytes)
            for image_id, sha256 in zip(ids, sha256s, strict=True):
                os.pwrite(tag_fd, tag_of(sha256), image_id * TAG_BYTES)
        finally:
            os.close(pixel_fd)
            os.close(tag_fd)

    def valid(self, ids: Sequence[int], sha256s: Sequence[str]) -> np.ndarray:
        """A boolean per id: does the cache hold this image's pixels?"""
        ids_array = np.asarray(ids, dtype=np.int64)
        result = np.zeros(len(ids_array), dtype=bool)
        if not len(ids_array) or not self.tags_file.exists():
            return result
        tag_rows = self.tags_file.stat().st_size // TAG_BYTES
        rows_present = min(tag_rows, self._rows_on_disk())
        if rows_present == 0:
            return result
        stored = np.memmap(self.tags_file, dtype=f"S{TAG_BYTES}", mode="r", shape=(tag_rows,))
        inside = ids_array < rows_present
        expected = np.array([tag_of(sha) for sha in sha256s], dtype=f"S{TAG_BYTES}")
        result[inside] = stored[ids_array[inside]] == expected[inside]
        return result

    def clear(self, ids: Sequence[int]) -> int:
        """Forget the rows of ``ids`` (deleted images): tag first, so a torn clear leaves the
        row invalid, then the pixels zeroed. Returns how many rows on disk were cleared."""
        rows = self._rows_on_disk()
        inside = sorted(int(i) for i in set(ids) if 0 <= int(i) < rows)
        if not inside or not self.tags_file.exists():
            return 0  # without tags no row is valid; pixels alone are never read
        with open(self.tags_file, "r+b") as tags, open(self.pixels_file, "r+b") as pixels:
            tag_rows = os.fstat(tags.fileno()).st_size // TAG_BYTES
            for image_id in inside:
                if image_id < tag_rows:
                    os.pwrite(tags.fileno(), bytes(TAG_BYTES), image_id * TAG_BYTES)
            blank = bytes(self.row_bytes)
            for image_id in inside:
                os.pwrite(pixels.fileno(), blank, image_id * self.row_bytes)
        return len(inside)

    def _rows_on_disk(self) -> int:
        if not self.pixels_file.exists():
            return 0
        return self.pixels_file.stat().st_size // self.row_bytes

    def array(self) -> np.ndarray:
        """A read-only memory map of every row on disk, shape (rows, size, size, 3)."""
        rows = self._rows_on_disk()
        if rows == 0:
            return np.zeros((0, self.size, self.size, 3), dtype=np.uint8)
        return np.memmap(
            self.pixels_file, dtype=np.uint8, mode="r", shape=(rows, self.size, self.size, 3)
        )

    def read(self, ids: Sequence[int]) -> np.ndarray:
        """Copy the rows of ``ids`` (in that order); the caller has checked they are valid."""
        return np.array(self.array()[np.asarray(ids, dtype=np.int64)])
