"""Grad-CAM (Selvaraju et al., 2017) on the last residual stage, written with hooks.

The heatmap shows which regions pushed the network toward a class: the gradient of that class's
logit with respect to ``layer4``'s activations, averaged per channel, weights the activations.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.crops import InputMode
from model.data import as_nchw, eval_transform


def gradcam(model: nn.Module, meta: dict, image_uint8: np.ndarray, target: int | None = None):
    """Heatmap float32 (H, W) in [0, 1] at the image's own size for class ``target``.

    A version trained on crops sees the whole image at its own scale (the trunk is fully
    convolutional and ends in global pooling), so the map covers every crop it could score.

    ``target`` is 0 (real) or 1 (fake); None explains the class the network chose. The model's
    mode and its parameters' gradients are left as they were.
    """
    image = np.asarray(image_uint8)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected one uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    device = next(model.parameters()).device
    transform = eval_transform(meta["image_size"], meta["mean"], meta["std"])
    if InputMode.from_meta(meta).crops:  # the whole image through the convolutional trunk
        batch = transform.normalise(as_nchw(image[None]))
    else:
        batch = transform(as_nchw(image[None]))
    captured = {}
    hook = model.layer4.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(batch.to(device).requires_grad_(True))
            chosen = int(logits.argmax(1)) if target is None else int(target)
            # autograd.grad, not backward(): the parameters' .grad stay untouched.
            (gradient,) = torch.autograd.grad(logits[0, chosen], captured["a"])
    finally:
        hook.remove()
        model.train(was_training)
    return _heatmap(captured["a"], gradient, image.shape[:2])


def _heatmap(activation: torch.Tensor, gradient: torch.Tensor, size) -> np.ndarray:
    """Weighted, rectified activation map, upsampled to ``size`` and scaled to [0, 1]."""
    weights = gradient.detach().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation.detach()).sum(dim=1, keepdim=True)).float()
    cam = nn.functional.interpolate(cam, size=tuple(size), mode="bilinear", align_corners=False)
    cam = cam[0, 0]
    span = float(cam.max() - cam.min())
    cam = (cam - cam.min()) / span if span > 1e-12 else torch.zeros_like(cam)
    return cam.cpu().numpy().astype(np.float32)


def _colormap(values: np.ndarray) -> np.ndarray:
    """A blue-cyan-yellow-red ramp (jet-like) for values in [0, 1] -> uint8 RGB."""
    values = np.clip(values, 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4 * values - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * values - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * values - 1), 0, 1)
    return (np.stack([red, green, blue], axis=-1) * 255).astype(np.uint8)


def overlay(
    image_uint8: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.45,
    fmt: str = "JPEG",
    max_side: int | None = 256,
) -> bytes:
    """The heatmap blended over the image, encoded as JPEG or PNG (RGBA heatmap only for PNG).

    ``fmt="PNG-RGBA"`` returns just the coloured heatmap with opacity following the heat, to lay
    over the image in the browser. Small images are enlarged to ``max_side`` so they are visible.
    """
    image = Image.fromarray(np.asarray(image_uint8, dtype=np.uint8), "RGB")
    heat = Image.fromarray(_colormap(heatmap), "RGB").resize(image.size, Image.BILINEAR)
    if max_side and max(image.size) < max_side:
        scale = max_side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image, heat = image.resize(size, Image.NEAREST), heat.resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    if fmt.upper() == "PNG-RGBA":
        opacity = Image.fromarray((np.clip(heatmap, 0, 1) * 255 * alpha).astype(np.uint8), "L")
        heat.putalpha(opacity.resize(heat.size, Image.BILINEAR))
        heat.save(buffer, "PNG")
    else:
        blended = Image.blend(image, heat, alpha)
        blended.save(buffer, "PNG" if fmt.upper() == "PNG" else "JPEG", quality=90)
    return buffer.getvalue()


def heat_png(heatmap: np.ndarray) -> bytes:
    """The heatmap alone, colour-mapped and fully opaque, as PNG at the heatmap's size.

    The review screen lays it over the image with an opacity the reviewer sets and shows the
    colour ramp as a legend, so nothing is blended in here.
    """
    buffer = io.BytesIO()
    Image.fromarray(_colormap(heatmap), "RGB").save(buffer, "PNG")
    return buffer.getvalue()
