"""The invisible watermarks that open-source generators embed by default.

The Stable Diffusion reference scripts mark every output with the invisible-watermark library's
DWT-DCT method: SD 1.x/2.x the bytes ``StableDiffusionV1`` (136 bits), SDXL a fixed 48-bit
message. Finding one (nearly all bits agree) is strong evidence of a generated image; finding none
means little (any other generator, or a re-encoded, resized or cropped copy, carries none).

The decoder class is loaded from the library's ``maxDct`` module alone: the package's ``__init__``
imports its RivaGAN model and with it PyTorch, which the importer and the web process must not
load.
"""

from __future__ import annotations

import importlib.util
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


@cache
def _embedder_class():
    """``EmbedMaxDct`` from invisible-watermark, or None when the library is missing."""
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = f"{list(spec.submodule_search_locations)[0]}/maxDct.py"
    module_spec = importlib.util.spec_from_file_location("realfake_imwatermark_maxdct", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.EmbedMaxDct


def decode_bits(bgr: np.ndarray, length: int) -> np.ndarray:
    """The ``length`` bits a DWT-DCT mark would carry in ``bgr`` (uint8, OpenCV channel order)."""
    embedder = _embedder_class()(watermarks=[], wmLen=length)
    return np.asarray(embedder.decode(bgr), dtype=np.uint8)


def read(image: PILImage.Image) -> dict[str, Any]:
    """The watermark finding: which marks were looked for, and how many bits of each agree."""
    from . import finding

    looked_for = list(MARKS)
    if _embedder_class() is None:
        return finding("not checked", "Not checked: library unavailable.", looked_for=looked_for)
    width, height = image.size
    if width * height < MIN_PIXELS:
        summary = "Not looked for: under 256x256 pixels, smaller than any mark is embedded in."
        return finding("not checked", summary, looked_for=looked_for)
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    agreements = {}
    for name, expected in MARKS.items():
        agreements[name] = round(float((decode_bits(bgr, len(expected)) == expected).mean()), 3)
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
