"""The network: torchvision's ResNet18 with a two-way head (REAL, FAKE).

ImageNet weights are used when they are present on disk (a file named in the configuration, checked
by SHA-256, or torchvision's own cache under TORCH_HOME); nothing is downloaded here (that is the
explicit ``flask model weights fetch``, ``model.weights``). Without them
the network starts from random weights, and the returned init string says which happened.

Stems: ``"imagenet"`` is torchvision's (7x7 stride-2 convolution and max-pool: the residual stages
see 1/4 of the input resolution, right for 224 px); ``"small"`` is the CIFAR-style stem (3x3
stride-1 convolution, no max-pool: full resolution, about 16x the compute), for tiny inputs such
as 32 px CIFAKE images; ``"medium"`` sits between them (3x3 stride-1 convolution, then the
max-pool: 1/2 resolution, about 4x the compute of ``"imagenet"`` at the same input size).

Residual input (``residual``): ``"npr"`` gives the first convolution, beside the three colour
channels, each pixel's difference from the top-left pixel of its 2x2 block (the neighbouring-pixel
relation of Tan et al., CVPR 2024: an upsampling generator's pixels are correlated in a 2-pixel
period that camera pixels are not); ``"highpass"`` gives the difference from the 3x3 mean instead
(a fixed high-pass filter, with no period assumed). Either is computed inside ``conv1``
(``ResidualConv2d``), so every engine, the batch-norm fusion and the checkpoint see one ordinary
convolution with six input channels. With ImageNet weights the residual channels start at zero,
so the pretrained network is unchanged until training moves them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

ARCHITECTURE = "resnet18"
NUM_CLASSES = 2
FEATURE_DIM = 512
STEMS = ("imagenet", "medium", "small")
RESIDUALS = ("none", "npr", "highpass")
OUTPUT_STRIDE = {"imagenet": 32, "medium": 16, "small": 8}
"""How many input pixels one pixel of the last residual stage spans, per stem: the ImageNet
stem halves twice (stride-2 convolution, then max pooling), "medium" only by its pooling,
"small" not at all; the three later stages halve each."""
RESIDUAL_GAIN = 4.0
"""Residuals are scaled by this so they start near the colour channels' spread (neighbouring
pixels of a photograph differ by a fraction of the spread of the pixels)."""
TORCHVISION_RESNET18_FILE = "resnet18-f37072fd.pth"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth?$")


class WeightsError(ValueError):
    """ImageNet weights were asked for but are missing, corrupt or not a ResNet18."""


def build_model(
    init: str = "auto",
    weights_path: str | None = None,
    weights_sha256: str | None = None,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    residual: str = "none",
) -> tuple[nn.Module, str]:
    """A ResNet18 with ``fc`` giving two logits, and how it was initialised.

    ``init`` is ``"auto"`` (ImageNet weights when found, else random), ``"imagenet"`` (weights
    required: a clear error when they are missing) or ``"random"``. The second value returned is
    ``"imagenet:<first 12 hex digits of the file's SHA-256>"`` or ``"random"``.
    """
    if init not in {"auto", "imagenet", "random"}:
        raise ValueError(f"unknown init {init!r}: use auto, imagenet or random")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}: use one of {', '.join(STEMS)}")
    if residual not in RESIDUALS:
        raise ValueError(f"unknown residual {residual!r}: use one of {', '.join(RESIDUALS)}")
    model = resnet18(weights=None, zero_init_residual=zero_init_residual)
    init_used = "random"
    if init != "random":
        path = Path(weights_path) if weights_path else torchvision_cache_path()
        if path.is_file():
            digest = _check_sha256(path, weights_sha256)
            _load_imagenet(model, path)
            init_used = f"imagenet:{digest[:12]}"
        elif init == "imagenet" or weights_path:
            raise WeightsError(f"ImageNet weights not found at {path}")
    _set_stem(model, stem)
    if residual != "none":
        model.conv1 = ResidualConv2d.around(model.conv1, residual, zero_new=init_used != "random")
    model.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
    return model, init_used


def checkpoints_dir() -> Path:
    """torch.hub's folder of downloaded weights (under TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_cache_path() -> Path:
    """Where torchvision keeps downloaded ResNet18 weights (under TORCH_HOME); maybe absent.

    torchvision's own file name first; else another ``resnet18-<hex>.pth`` there (as
    ``flask model weights fetch --url`` stores one), whose hash is checked like any.
    """
    published = checkpoints_dir() / TORCHVISION_RESNET18_FILE
    if published.is_file():
        return published
    others = sorted(checkpoints_dir().glob("resnet18-*.pth"))
    named = [path for path in others if hash_in_name(path.name)]
    return named[0] if named else published


def hash_in_name(name: str) -> str | None:
    """The SHA-256 prefix a torchvision weights file name carries (``name-<hex>.pth``)."""
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def load_imagenet(path: Path) -> None:
    """Check that ``path`` loads into a torchvision ResNet18 (WeightsError if not)."""
    _load_imagenet(resnet18(weights=None), path)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str | None) -> str:
    """The file's digest; raises when it differs from ``expected`` or the hash in its name."""
    digest = file_sha256(path)
    if expected is None:
        expected = hash_in_name(path.name)
    if expected is not None and not digest.startswith(expected.lower()):
        raise WeightsError(
            f"SHA-256 mismatch for {path}: expected {expected}, file has {digest}; "
            "the file is corrupt or not the weights the configuration names"
        )
    return digest


def _load_imagenet(model: nn.Module, path: Path) -> None:
    """Load a torchvision ResNet18 state dict into ``model`` (the 1000-way ``fc`` included)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one
        raise WeightsError(f"cannot read ImageNet weights from {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise WeightsError(f"{path} is not a torchvision ResNet18 state dict: {error}") from error


def _set_stem(model: nn.Module, stem: str) -> None:
    """Swap in a 3x3 stride-1 stem for small inputs (its kernel starts from random)."""
    if stem in {"small", "medium"}:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "small":
        model.maxpool = nn.Identity()


class ResidualConv2d(nn.Conv2d):
    """A convolution over the colour channels and a fixed residual of them (``RESIDUALS``).

    ``in_channels`` is 6: the three channels as given, then ``RESIDUAL_GAIN`` times their residual.
    The residual has no parameters, so the state dict is an ordinary convolution's.
    """

    def __init__(self, *args, residual: str = "npr", **kwargs):
        super().__init__(*args, **kwargs)
        self.residual = residual

    @classmethod
    def around(cls, conv: nn.Conv2d, residual: str, zero_new: bool) -> ResidualConv2d:
        """A six-channel copy of a three-channel ``conv``: its colour weights kept, the residual
        weights random (or zero, so a pretrained network starts unchanged)."""
        wide = cls(
            2 * conv.in_channels,
            conv.out_channels,
            kernel_size=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            bias=conv.bias is not None,
            residual=residual,
        )
        with torch.no_grad():
            wide.weight[:, : conv.in_channels] = conv.weight
            if zero_new:
                wide.weight[:, conv.in_channels :] = 0.0
            if conv.bias is not None:
                wide.bias.copy_(conv.bias)
        return wide

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Convolve ``[images, gain * residual(images)]``."""
        return super().forward(
            torch.cat([images, RESIDUAL_GAIN * residual_of(images, self.residual)], 1)
        )


def residual_of(images: torch.Tensor, kind: str) -> torch.Tensor:
    """``images`` minus the top-left pixel of each 2x2 block (``npr``) or minus the 3x3 mean
    (``highpass``)."""
    if kind == "npr":
        height, width = images.shape[-2:]
        anchors = images[..., ::2, ::2]
        upsampled = anchors.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        return images - upsampled[..., :height, :width]
    if kind == "highpass":
        mean = nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
        return images - mean
    raise ValueError(f"unknown residual {kind!r}")


def forward_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The penultimate 512-d features (after global average pooling) of a torchvision ResNet."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


class FeaturesAndLogits(nn.Module):
    """Wraps a ResNet so one forward pass returns ``(features, logits)`` (traceable)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of a normalised float batch."""
        features = forward_features(self.model, images)
        return features, self.model.fc(features)
