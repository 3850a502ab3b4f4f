"""What distributed (DistributedDataParallel) training needs beside the single-process loop.

``DistributedContext`` says which process this is (rank, world size, device, backend) and wraps
the few collectives the training loop uses: agreeing on a number, summing epoch statistics,
gathering a value from every rank. ``train.train(..., distributed=context)`` uses it; the process
group itself is set up by ``model.distributed`` (the torchrun entry point).

Batch norm across processes: each process sees only its share of a batch, so plain batch norm
would normalise with statistics of a smaller batch than one process would see, and the runs
would differ. ``sync_batch_norm`` makes every batch-norm layer use the statistics of the whole
global batch: PyTorch's ``SyncBatchNorm`` on CUDA, and on CPU (where PyTorch's refuses to run)
``CpuSyncBatchNorm2d`` here, which reduces the per-channel sums with differentiable all-reduces.
``plain_batch_norm`` turns them back into ``nn.BatchNorm2d`` (same state dict), so the saved
network is exactly what single-process training saves.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a distributed run; its methods are collectives (all ranks call)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, calibrates, reports progress and writes the checkpoint."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device, backend: str) -> DistributedContext:
        """The context of a process started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK)."""
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            device=device,
            backend=backend,
        )

    def max(self, value: float) -> float:
        """The largest ``value`` over all ranks (so every rank takes the same decision)."""
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        return self.max(1.0 if flag else 0.0) > 0.0

    def combine_epoch(self, stats: dict) -> dict:
        """One epoch's statistics (``engine.train_one_epoch``) over all ranks' images."""
        images = float(stats["images"])
        local = [stats["loss"] * images, stats["accuracy"] * images, images]
        totals = torch.tensor(local, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(totals)
        seconds = self.max(stats["seconds"])
        loss_sum, correct, seen = (float(value) for value in totals.tolist())
        return {
            **stats,
            "loss": loss_sum / max(seen, 1.0),
            "accuracy": correct / max(seen, 1.0),
            "images": int(seen),
            "seconds": seconds,
            "images_per_s": seen / seconds if seconds > 0 else 0.0,
        }

    def gather(self, value) -> list:
        """``value`` (any picklable object) from every rank, in rank order."""
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    @property
    def _comm_device(self) -> torch.device:
        # NCCL moves only CUDA tensors; gloo moves CPU ones.
        return self.device if self.backend == "nccl" else torch.device("cpu")


def state_sha256(model: nn.Module) -> str:
    """A digest of every tensor of ``model``'s state dict (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: each rank's input feeds
    every rank's output, so its gradient is the sum of every rank's output gradient."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        total = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks, differentiable."""
    return _SumOverRanks.apply(tensor)


class CpuSyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics cover the whole global batch on all ranks.

    Mean and variance are reduced in two passes (sum, then sum of squared deviations from the
    global mean), which is as accurate as one process's batch norm. Outside training, or with
    one process, it is plain batch norm. Its state dict is ``nn.BatchNorm2d``'s.
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Batch norm with global-batch statistics while training in a process group."""
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(inputs)
        values = inputs.float()
        channels = values.shape[1]
        count = torch.tensor([values.numel() / channels], dtype=values.dtype)
        sums = sum_over_ranks(torch.cat([values.sum(dim=(0, 2, 3)), count]))
        total = sums[channels].detach()
        mean = sums[:channels] / total
        centred = values - mean.view(1, -1, 1, 1)
        variance = sum_over_ranks(centred.square().sum(dim=(0, 2, 3))) / total
        outputs = centred * torch.rsqrt(variance + self.eps).view(1, -1, 1, 1)
        if self.affine:
            outputs = outputs * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        self._track(mean.detach(), variance.detach(), float(total))
        return outputs.to(inputs.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, variance: torch.Tensor, count: float) -> None:
        """Update the running statistics as ``nn.BatchNorm2d`` does (unbiased variance)."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        unbiased = variance * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make ``model``'s batch norms use global-batch statistics (in place; returns the model)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = CpuSyncBatchNorm2d  # same attributes, parameters and buffers
    return model


def plain_batch_norm(model: nn.Module) -> nn.Module:
    """Undo ``sync_batch_norm`` (in place): plain ``nn.BatchNorm2d`` with the same tensors."""
    for module in model.modules():
        if type(module) is CpuSyncBatchNorm2d:
            module.__class__ = nn.BatchNorm2d
        for name, child in list(module.named_children()):
            if isinstance(child, nn.SyncBatchNorm):
                setattr(module, name, _as_batch_norm_2d(child))
    return model


def _as_batch_norm_2d(synced: nn.SyncBatchNorm) -> nn.BatchNorm2d:
    plain = nn.BatchNorm2d(
        synced.num_features,
        synced.eps,
        synced.momentum,
        synced.affine,
        synced.track_running_stats,
        device=synced.running_mean.device if synced.running_mean is not None else None,
    )
    plain.load_state_dict(synced.state_dict())
    plain.train(synced.training)
    return plain
