"""The invisible watermarks that open-source generators embed by default.

The Stable Diffusion reference scripts mark every output with the invisible-watermark library's
DWT-DCT method: SD 1.x/2.x the bytes ``StableDiffusionV1`` (136 bits), SDXL a fixed 48-bit
message. Finding one (nearly all bits agree) is strong evidence of a generated image; finding none
means little (any other generator, or a re-encoded, resized or cropped copy, carries none).

The decoder is the library's ``dwtDct`` decoder (``imwatermark.maxDct.EmbedMaxDct.decode``:
YUV, a Haar DWT of the U channel, one vote per 4x4 block) written with whole-array numpy
operations: the library loops over the blocks in Python, about 0.1 s per mark on a 512x512 image,
which every import would pay; and importing the library's package loads its RivaGAN model and
with it PyTorch, which the importer and the web process must not load. The tests check that both
give the same bits, on marked and unmarked images. OpenCV comes with the library.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from PIL import Image as PILImage

SDXL_MESSAGE = 0b101100111110110010010000011110111011000110011110
MARKS = {
    "Stable Diffusion 1.x/2.x (StableDiffusionV1)": np.unpackbits(
        np.frombuffer(b"StableDiffusionV1", dtype=np.uint8)
    ),
    "Stable Diffusion XL": np.array([int(bit) for bit in bin(SDXL_MESSAGE)[2:]], dtype=np.uint8),
}
MIN_PIXELS = 256 * 256  # the library refuses smaller images: no generator's default output
AGREEMENT = 0.9  # share of bits that must match; chance alone gives about half
BLOCK, SCALE = 4, 36  # the library's defaults for dwtDct, which the reference scripts use


HAAR = np.float64(0.7071067811865476)  # PyWavelets' Haar filter taps, 1/sqrt(2)


@cache
def _opencv():
    """OpenCV as invisible-watermark installs it (its YUV conversion), or None when missing."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def haar_approximation(channel: np.ndarray) -> np.ndarray:
    """The approximation band of one level of the 2-D Haar DWT of an even-sized array, the
    same floating-point operations as PyWavelets' ``dwt2(channel, "haar")[0]`` (so the same
    bits, tested), but a few milliseconds instead of a fifth of a second on a photograph."""
    rows = HAAR * channel[0::2] + HAAR * channel[1::2]
    return HAAR * rows[:, 0::2] + HAAR * rows[:, 1::2]


def block_scores(pixels: np.ndarray, order: str = "BGR") -> np.ndarray:
    """One 0/1 score per 4x4 block of the U channel's Haar approximation, in the library's block
    order: whether the block's largest AC coefficient sits in the upper half of its step.
    ``pixels`` is uint8 in OpenCV's BGR order (the library's input) or, with ``order="RGB"``,
    as Pillow gives it: the same U channel either way, without a reordered copy."""
    cv2 = _opencv()
    rows, cols = pixels.shape[0] // 4 * 4, pixels.shape[1] // 4 * 4
    code = cv2.COLOR_BGR2YUV if order == "BGR" else cv2.COLOR_RGB2YUV
    yuv = cv2.cvtColor(np.ascontiguousarray(pixels[:rows, :cols]), code)
    # U: the only channel the default scales mark.
    frame = haar_approximation(yuv[:, :, 1].astype(np.float64))
    height, width = frame.shape[0] // BLOCK, frame.shape[1] // BLOCK
    blocks = frame[: height * BLOCK, : width * BLOCK].reshape(height, BLOCK, width, BLOCK)
    blocks = blocks.swapaxes(1, 2).reshape(height * width, BLOCK * BLOCK)
    position = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
    values = np.abs(blocks[np.arange(len(blocks)), position])
    return ((values % SCALE) > 0.5 * SCALE).astype(np.float64)


def decode_bits(bgr: np.ndarray, length: int, scores: np.ndarray | None = None) -> np.ndarray:
    """The ``length`` bits a DWT-DCT mark would carry in ``bgr`` (uint8, OpenCV channel order):
    block ``n`` votes for bit ``n % length``, a bit is set when most of its blocks say so."""
    scores = block_scores(bgr) if scores is None else scores
    bit_of_block = np.arange(len(scores)) % length
    votes = np.bincount(bit_of_block, weights=scores, minlength=length)
    means = votes / np.maximum(np.bincount(bit_of_block, minlength=length), 1)
    return (means * 255 > 127).astype(np.uint8)


def read(image: PILImage.Image) -> dict[str, Any]:
    """The watermark finding: which marks were looked for, and how many bits of each agree."""
    from . import finding

    looked_for = list(MARKS)
    if _opencv() is None:
        return finding("not checked", "Not checked: library unavailable.", looked_for=looked_for)
    width, height = image.size
    if width * height < MIN_PIXELS:
        summary = "Not looked for: under 256x256 pixels, smaller than any mark is embedded in."
        return finding("not checked", summary, looked_for=looked_for)
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    scores = block_scores(rgb, "RGB")  # shared by every mark: only the bit each block votes differs
    agreements = {}
    for name, expected in MARKS.items():
        decoded = decode_bits(rgb, len(expected), scores)
        agreements[name] = round(float((decoded == expected).mean()), 3)
    found = [name for name, share in agreements.items() if share >= AGREEMENT]
    details = {"looked_for": looked_for, "method": "dwtDct", "bit_agreement": agreements}
    if found:
        summary = (
            f"{found[0]} watermark found ({agreements[found[0]]:.0%} of bits). Strong evidence."
        )
        return finding("found", summary, "strong", says="fake", mark=found[0], **details)
    summary = (
        "No known generator watermark (looked for: " + "; ".join(looked_for) + "). Means little."
    )
    return finding("none", summary, "none", says=None, **details)
