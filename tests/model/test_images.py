"""The one decode-and-resize for the network (``model.images``), without the app: a notebook
gets exactly the pixels the desk's pixel cache holds for a file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from model.images import load_for_model, resize_for_model, to_rgb
from tests.model.factories import make_images


def _encoded(pixels: np.ndarray, fmt: str, mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).convert(mode).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _reference(data: bytes, size: int) -> np.ndarray:
    """The cache's recipe spelled out with Pillow: DCT draft for JPEG, RGB, bilinear with a
    reducing gap of 3."""
    with PILImage.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("RGB", (size, size))
        rgb = image.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), PILImage.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(rgb, dtype=np.uint8)


@pytest.mark.parametrize(
    ("fmt", "mode", "side"),
    [("JPEG", "RGB", 200), ("JPEG", "L", 96), ("PNG", "RGB", 50), ("PNG", "RGBA", 64)],
)
def test_load_for_model_gives_the_cache_recipe_bit_for_bit(tmp_path, fmt, mode, side):
    images, _ = make_images(3, size=side, seed=side)
    for index, pixels in enumerate(images):
        data = _encoded(pixels, fmt, mode)
        path = tmp_path / f"{index}.{fmt.lower()}"
        path.write_bytes(data)
        for size in (32, 64):
            expected = _reference(data, size)
            from_bytes = load_for_model(data, size)
            assert from_bytes.shape == (size, size, 3) and from_bytes.dtype == np.uint8
            assert np.array_equal(from_bytes, expected)
            assert np.array_equal(load_for_model(path, size), expected)
            assert np.array_equal(load_for_model(str(path), size), expected)


def test_load_for_model_uses_draft_for_jpeg():
    images, _ = make_images(1, size=800)
    data = _encoded(images[0], "JPEG", quality=90)
    pixels = load_for_model(data, 64)
    assert pixels.shape == (64, 64, 3)
    with PILImage.open(io.BytesIO(data)) as full:
        undrafted = resize_for_model(full, 64).astype(int)
    assert not np.array_equal(pixels, undrafted)  # decoded at a reduced DCT scale
    assert np.abs(pixels.astype(int) - undrafted).mean() < 3  # the same picture


def test_an_image_already_at_size_is_left_as_it_is():
    images, _ = make_images(1, size=32)
    assert np.array_equal(load_for_model(_encoded(images[0], "PNG"), 32), images[0])


def test_palette_transparency_goes_through_rgba():
    palette = PILImage.fromarray(make_images(1, size=16)[0][0]).quantize(8)
    palette.info["transparency"] = 0
    assert to_rgb(palette).mode == "RGB"
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)
    assert load_for_model(buffer.getvalue(), 8).shape == (8, 8, 3)


def test_a_file_that_is_not_an_image_raises_pillows_error():
    with pytest.raises(PILImage.UnidentifiedImageError):
        load_for_model(b"not an image at all", 32)
