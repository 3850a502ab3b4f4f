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
give the same bits, on marked and unmarked images. OpenCV and PyWavelets come with the library.
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


@cache
def _libraries():
    """(cv2, pywt) as invisible-watermark installs them, or None when they are missing."""
    try:
        import cv2
        import pywt
    except ImportError:
        return None
    return cv2, pywt


def block_scores(bgr: np.ndarray) -> np.ndarray:
    """One 0/1 score per 4x4 block of the U channel's Haar approximation, in the library's block
    order: whether the block's largest AC coefficient sits in the upper half of its step."""
    cv2, pywt = _libraries()
    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    yuv = cv2.cvtColor(np.ascontiguousarray(bgr[:rows, :cols]), cv2.COLOR_BGR2YUV)
    frame, _details = pywt.dwt2(yuv[:, :, 1], "haar")  # the only channel the default scales mark
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
    if _libraries() is None:
        return finding("not checked", "Not checked: library unavailable.", looked_for=looked_for)
    width, height = image.size
    if width * height < MIN_PIXELS:
        summary = "Not looked for: under 256x256 pixels, smaller than any mark is embedded in."
        return finding("not checked", summary, looked_for=looked_for)
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    scores = block_scores(bgr)  # the same for every mark; only the bit each block votes for differs
    agreements = {}
    for name, expected in MARKS.items():
        decoded = decode_bits(bgr, len(expected), scores)
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
