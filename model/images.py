"""From an image file to the square uint8 pixels the network reads: the one decode-and-resize.

The desk's pixel cache is built with these functions (at import, and when a row is rebuilt from
the stored original), and a script or notebook that scores a file of its own calls
:func:`load_for_model` to get exactly the pixels the cache would hold for it, so the two never
drift apart. Resampling: Pillow's bilinear filter with ``reducing_gap`` 3 (JPEGs are first
reduced by the decoder's DCT scaling, ``draft``, to the smallest scale at least ``size``).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

RESAMPLE = PILImage.Resampling.BILINEAR
REDUCING_GAP = 3.0
DRAFT_FORMATS = ("JPEG", "MPO")  # formats whose decoder can scale down while decoding


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """The image in RGB. Transparency is dropped (palette images go through RGBA first, the
    way Pillow asks for); every path from file to model pixels uses this one conversion."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def resize_for_model(image: PILImage.Image, size: int) -> np.ndarray:
    """Square ``size`` x ``size`` RGB uint8 pixels from a decoded image (the seed's resize)."""
    image = to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE, reducing_gap=REDUCING_GAP)
    return np.asarray(image, dtype=np.uint8)


def load_for_model(source: bytes | str | Path, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 pixels of an image file (a path, or its encoded bytes), as the
    pixel cache rebuilds a row from a stored original: JPEGs drafted to ``size``, then resized.
    (An import drafts a JPEG only down to what its thumbnail also needs, so a row written at
    import can differ from this by the rounding of another DCT scale.)

    Pillow's warnings about odd files (palette transparency, corrupt EXIF) are silenced: they say
    nothing about the pixels. An unreadable file raises Pillow's own error.
    """
    opened = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PILImage.open(opened) as image:
            if image.format in DRAFT_FORMATS:
                image.draft("RGB", (size, size))
            return resize_for_model(image, size)
