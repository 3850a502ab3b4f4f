"""Fetching torchvision's ResNet18 ImageNet weights into torchvision's cache, checked.

Training never downloads anything (``network.build_model`` only reads files); this is the one
explicit step for users who are online: ``flask model weights fetch``. The URL is the one
torchvision publishes in its weights enum, the file name carries the first hex digits of the
file's SHA-256 (torchvision's convention, checked here and again at every load), and the file
lands in torch.hub's checkpoint folder under that name, where ``build_model`` finds it. The file
is written beside its destination and moved into place only once it is complete, checked and
loadable, so a failed fetch changes nothing.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from model.network import WeightsError, checkpoints_dir, file_sha256, hash_in_name, load_imagenet

CHUNK = 1 << 20


class FetchError(RuntimeError):
    """The weights could not be fetched (no network, refused, missing); nothing was changed."""


@dataclass
class Fetched:
    """Where the weights are, their SHA-256, and whether this call downloaded them."""

    path: Path
    sha256: str
    downloaded: bool
    size_bytes: int


def published_url() -> str:
    """The URL torchvision publishes for ResNet18's ImageNet weights (``IMAGENET1K_V1``)."""
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1.url


def expected_hash(url: str, sha256: str | None = None) -> str:
    """The SHA-256 (or its prefix) the file must have: the one given, else the file name's."""
    expected = sha256 or hash_in_name(_file_name(url))
    if not expected:
        raise WeightsError(
            f"{_file_name(url)} carries no SHA-256 in its name (name-<hex>.pth): pass the hash"
        )
    return expected.lower()


def fetch_weights(url: str | None = None, sha256: str | None = None, timeout: float = 60.0):
    """Download the weights at ``url`` (default: torchvision's) into torch.hub's cache.

    Returns a ``Fetched``; when a checked copy is already there nothing is downloaded. Raises
    ``FetchError`` when the download fails and ``WeightsError`` when the file is not the
    weights it should be; either way the cache is as it was.
    """
    url = url or published_url()
    expected = expected_hash(url, sha256)
    destination = checkpoints_dir() / _file_name(url)
    if destination.is_file() and file_sha256(destination).startswith(expected):
        return Fetched(destination, file_sha256(destination), False, destination.stat().st_size)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    try:
        _download(url, partial, timeout)
        digest = file_sha256(partial)
        if not digest.startswith(expected):
            raise WeightsError(
                f"SHA-256 mismatch for {url}: expected {expected}, the download has {digest}"
            )
        load_imagenet(partial)  # a ResNet18 state dict, or WeightsError
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return Fetched(destination, digest, True, destination.stat().st_size)


def _file_name(url: str) -> str:
    name = Path(urlparse(url).path).name
    if not name:
        raise WeightsError(f"{url} names no file")
    return name


def _download(url: str, path: Path, timeout: float) -> None:
    """Copy ``url`` to ``path`` in chunks; FetchError with the reason when that fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(f"could not download {url}: {reason}") from error
