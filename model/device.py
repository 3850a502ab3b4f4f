"""Which device to run on and in which precision.

On CUDA ``auto`` is bf16 autocast (fp16 where bf16 is missing). On a CPU ``auto`` is fp32: bf16
autocast is several times slower than fp32 on an AVX2-only CPU, and even with AMX eager bf16 can
lose to fp32 at some sizes and batches, so whether bf16 pays on a CPU is *measured*
(``model.tuning``), never guessed from CPU flags. ``REALFAKE_PRECISION=fp32|bf16|auto`` sets the
precision where a caller passes none.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

PRECISION_ENV = "REALFAKE_PRECISION"


def pick_device(preference: str | torch.device = "auto") -> torch.device:
    """The device to use: ``"auto"`` picks cuda, then mps, then cpu; a device name forces it."""
    if isinstance(preference, torch.device):
        preference = str(preference)
    preference = (preference or "auto").lower()
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference not in {"cpu", "cuda", "mps"} and not preference.startswith("cuda:"):
        raise ValueError(f"unknown device {preference!r}: use auto, cpu, cuda or mps")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    if preference == "mps" and not _mps_available():
        raise ValueError("device 'mps' was asked for but MPS is not available")
    return torch.device(preference)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has bf16 matrix units (AVX512-BF16 or AMX), so bf16 autocast pays."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@dataclass(frozen=True)
class Policy:
    """How to run a network on a device: autocast dtype (None = fp32) and memory format."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    @property
    def name(self) -> str:
        """A short label such as ``cpu/fp32/channels_last`` for logs and benchmarks."""
        dtype = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        layout = "channels_last" if self.channels_last else "contiguous"
        return f"{self.device.type}/{dtype}/{layout}"

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 training needs loss scaling; bf16 and fp32 do not."""
        return self.autocast_dtype == torch.float16

    def autocast(self):
        """A context manager running the forward pass in the policy's precision."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def memory_format(self) -> torch.memory_format:
        """The memory format for 4-D inputs and the network's weights."""
        return torch.channels_last if self.channels_last else torch.contiguous_format


def precision_policy(device: torch.device | str, precision: str | None = None) -> Policy:
    """The precision policy for ``device`` (see the module docstring for ``auto``).

    ``precision`` (or the ``REALFAKE_PRECISION`` environment variable when it is None) is
    ``"auto"``, ``"fp32"`` or ``"bf16"``; ``"fp16"`` is accepted on CUDA.
    """
    device = torch.device(device)
    choice = (precision or os.environ.get(PRECISION_ENV) or "auto").lower()
    if choice not in {"auto", "fp32", "bf16", "fp16"}:
        raise ValueError(f"unknown precision {choice!r}: use auto, fp32, bf16 or fp16")
    if choice == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast is only supported on CUDA here; use bf16 or fp32")
    # channels_last is what oneDNN and cuDNN convolutions prefer; on MPS it brings nothing.
    channels_last = device.type in {"cpu", "cuda"}
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(choice)
    if choice == "auto":
        dtype = _auto_dtype(device)
    return Policy(device=device, autocast_dtype=dtype, channels_last=channels_last)


def _auto_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None  # CPU and MPS: fp32 unless a measurement (model.tuning) chose bf16
