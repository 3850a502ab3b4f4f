"""An exponential moving average of the weights, the network a short run ends with.

Averaging the last few hundred steps' weights smooths out the noise of the final steps of a short
schedule (one of the levers the CIFAKE recipe weighs: ``TrainConfig.ema_decay``). Batch-norm
running statistics are averaged with the weights, so the averaged network is used as it is. The
decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so a run of a few hundred
steps is not dominated by its random start.
"""

from __future__ import annotations

import torch
from torch import nn


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


class WeightEMA:
    """A shadow copy of a network's parameters and buffers, updated after each step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow = [tensor.detach().clone() for tensor in _tensors(model)]

    def update(self, model: nn.Module) -> None:
        """Move the average towards the network's current weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for shadow, tensor in zip(self.shadow, _tensors(model), strict=True):
                if shadow.dtype.is_floating_point:
                    shadow.lerp_(tensor.detach(), 1.0 - decay)
                else:
                    shadow.copy_(tensor)

    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged weights into ``model`` (the same architecture)."""
        with torch.no_grad():
            for shadow, tensor in zip(self.shadow, _tensors(model), strict=True):
                tensor.copy_(shadow)
