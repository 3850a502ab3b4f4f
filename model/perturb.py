"""Re-encoding and rescaling: the perturbations images meet after they leave the generator.

A detector that reads pixel-level traces can lose them when a platform re-compresses or
downsizes an image. Two uses:

- ``perturb_image`` makes a perturbed copy of a decoded original (PIL) for measuring
  robustness (``flask model evaluate --perturb``): ``jpeg75`` / ``jpeg50`` re-encode as JPEG at
  that quality, ``resize50`` halves each side, ``crop90`` keeps the central 90% of each side.
- ``degrade_batch`` applies random JPEG re-encoding and down-and-up rescaling to a uint8 batch
  during training (``Augment.jpeg_p`` / ``rescale_p``), so the network learns traces that survive.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

PERTURBATIONS = ("jpeg75", "jpeg50", "resize50", "crop90")


def perturb_image(image: Image.Image, name: str) -> Image.Image:
    """A perturbed RGB copy of ``image`` (see the module docstring for the names)."""
    image = image.convert("RGB")
    if name in ("jpeg75", "jpeg50"):
        return jpeg_copy(image, int(name[4:]))
    if name == "resize50":
        width, height = image.size
        half = (max(1, round(width / 2)), max(1, round(height / 2)))
        return image.resize(half, Image.Resampling.BILINEAR, reducing_gap=3.0)
    if name == "crop90":
        width, height = image.size
        keep_w, keep_h = max(1, round(width * 0.9)), max(1, round(height * 0.9))
        left, top = (width - keep_w) // 2, (height - keep_h) // 2
        return image.crop((left, top, left + keep_w, top + keep_h))
    raise ValueError(f"unknown perturbation {name!r}: use {', '.join(PERTURBATIONS)}")


def jpeg_copy(image: Image.Image, quality: int) -> Image.Image:
    """``image`` encoded as JPEG at ``quality`` (Pillow's libjpeg) and decoded again, as RGB."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A uint8 CHW image encoded as JPEG at ``quality`` and decoded again."""
    pixels = image.permute(1, 2, 0).contiguous().numpy()
    copy = np.asarray(jpeg_copy(Image.fromarray(pixels), quality))
    return torch.from_numpy(copy.copy()).permute(2, 0, 1)


def rescale_roundtrip(image: torch.Tensor, scale: float) -> torch.Tensor:
    """A uint8 CHW image shrunk by ``scale`` (antialiased) and resized back to its size."""
    height, width = image.shape[-2:]
    small = [max(1, round(height * scale)), max(1, round(width * scale))]
    return F.resize(F.resize(image, small, antialias=True), [height, width], antialias=True)


def degrade_batch(batch: torch.Tensor, params: dict) -> torch.Tensor:
    """Re-encode and rescale the rows of a uint8 NCHW batch that ``params`` picked.

    ``params`` holds per-image draws: ``rescale`` (bool) with ``scale``, then ``jpeg`` (bool)
    with ``quality``; rescaling comes first, as when a platform downsizes and then compresses.
    """
    rows = torch.zeros(batch.shape[0], dtype=torch.bool)
    for key in ("rescale", "jpeg"):
        if key in params:
            rows |= params[key]
    if not rows.any():
        return batch
    out = batch.clone()
    for index in torch.nonzero(rows).flatten().tolist():
        image = batch[index]
        if "rescale" in params and params["rescale"][index]:
            image = rescale_roundtrip(image, float(params["scale"][index]))
        if "jpeg" in params and params["jpeg"][index]:
            image = jpeg_roundtrip(image, int(params["quality"][index]))
        out[index] = image
    return out
