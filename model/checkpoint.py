"""Checkpoints: the network's weights plus everything needed to rebuild it and its preprocessing.

A checkpoint is one file written by ``torch.save``: ``{"format", "state_dict", "meta"}``. ``meta``
is plain JSON-able data (architecture, stem, image_size, mean, std, class_order, temperature,
train_args, metrics, train_set_sha256, init_weights, history, ...), so it loads with
``weights_only=True`` and can be copied into a database row as is. Files are written to a
temporary name and renamed, so a crash never leaves half a checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.network import ARCHITECTURE, build_model

FORMAT_VERSION = 1
REQUIRED_META = ("architecture", "stem", "image_size", "mean", "std", "class_order")


class CheckpointError(ValueError):
    """The file is missing, unreadable, or not a checkpoint this code can rebuild."""


def _plain(value):
    """JSON default: NumPy and torch scalars and arrays become Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint meta")


def plain_meta(meta: dict) -> dict:
    """``meta`` as plain JSON types (a copy), so it is safe for ``weights_only`` loading."""
    return json.loads(json.dumps(meta, default=_plain))


def save_checkpoint(path, model: nn.Module, meta: dict) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically; returns the path."""
    meta = plain_meta({"architecture": ARCHITECTURE, "class_order": ["real", "fake"], **meta})
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise CheckpointError(f"checkpoint meta lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save({"format": FORMAT_VERSION, "state_dict": state, "meta": meta}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path) -> dict:
    """The raw checkpoint dict, validated; raises ``CheckpointError`` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(payload, dict) or "state_dict" not in payload or "meta" not in payload:
        raise CheckpointError(f"{path} is not a RealFake checkpoint")
    if payload.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {payload['format']})")
    meta = payload["meta"]
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise CheckpointError(f"{path} meta lacks {', '.join(missing)}")
    if meta["architecture"] != ARCHITECTURE:
        raise CheckpointError(f"{path} holds a {meta['architecture']}, expected {ARCHITECTURE}")
    return payload


def load_checkpoint(path, device=None) -> tuple[nn.Module, dict]:
    """Rebuild the network of a checkpoint (eval mode, on ``device`` or CPU) and its meta."""
    payload = read_checkpoint(path)
    meta = payload["meta"]
    model, _ = build_model(init="random", stem=meta["stem"], residual=meta.get("residual", "none"))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the network: {error}") from error
    model.eval()
    if device is not None:
        model.to(device)
    return model, meta
